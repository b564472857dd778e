"""fio profiles: small TOML files that describe one workload, and the job files made from them.

A profile names a workload (``small-files``, ``large-shards``, ...); the sweep
supplies the parameters (block size, numjobs, iodepth) and the harness owns the
options that make a run comparable (time-based, runtime, ramp, direct I/O,
where the data lives). The format is documented in ``bench/profiles/README.md``.
Built-in profiles live beside this module; a directory given by the user is
searched first, so a user file can add a profile or replace a built-in one.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tiering.core.errors import UserError
from tiering.core.units import parse_size

BUILTIN_DIR = Path(__file__).parents[1] / "profiles"  # bench/profiles: data beside the code that runs it

#: Options the harness sets for every point; a profile that sets them is refused.
RESERVED = frozenset(
    {"directory", "filename_format", "bs", "blocksize", "numjobs", "iodepth", "runtime", "ramp_time",
     "time_based", "group_reporting", "direct", "create_only", "output", "output-format"}
)
#: Options whose values may be written in the project's units ("128KiB"); written to fio in bytes.
SIZE_OPTIONS = frozenset({"size", "filesize", "io_size"})
_SWEEP_KEYS = {"bs": parse_size, "numjobs": int, "iodepth": int}
_READ_MODES = frozenset({"read", "randread", "rw", "readwrite", "randrw"})


class ProfileError(UserError):
    """A profile is unknown or malformed; the message names the file and key."""


@dataclass(frozen=True)
class Profile:
    """One workload: fio options plus default sweep values."""

    name: str
    path: Path
    description: str
    options: Mapping[str, str]  # fio option -> value as written to the job file
    sweep: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # bs / numjobs / iodepth defaults

    @property
    def mode(self) -> str:
        """fio's ``rw``: names the result files, as bench-fio does."""
        return self.options["rw"]

    @property
    def reads(self) -> bool:
        return self.mode in _READ_MODES

    def per_job_bytes(self, size: int | None = None) -> int:
        """Bytes of data each job works on, with ``size`` (the ``--size`` option) applied."""
        return int(self.sized(size)["size"])

    def shares_files(self) -> bool:
        """True when every job addresses the same files (``filename=``), so the data set does not grow with numjobs."""
        return "filename" in self.options

    def sized(self, size: int | None) -> dict[str, str]:
        """The options with ``size`` applied: ``nrfiles`` scales when the profile fixes ``filesize``."""
        options = dict(self.options)
        if "filesize" in options and "nrfiles" in options:
            if size is not None:
                options["nrfiles"] = str(max(1, size // int(options["filesize"])))
            # fio needs ``size`` spelled out for a file set (axboe/fio#631).
            options["size"] = str(int(options["nrfiles"]) * int(options["filesize"]))
        elif size is not None:
            options["size"] = str(size)
        if "size" not in options:
            raise ProfileError(f"{self.path}: [fio] sets no size; add size = \"1GiB\" or pass --size")
        return options


def profile_dirs(extra: Path | None = None) -> list[Path]:
    """Where profiles are looked up, first match wins: the user's directory, then the built-ins."""
    return [extra, BUILTIN_DIR] if extra is not None else [BUILTIN_DIR]


def available(dirs: Iterable[Path]) -> dict[str, Path]:
    """Profile name -> file, earlier directories shadowing later ones."""
    found: dict[str, Path] = {}
    for directory in reversed(list(dirs)):
        for path in sorted(Path(directory).glob("*.toml")):
            found[path.stem] = path
    return found


def load_profile(name: str, extra_dir: Path | None = None) -> Profile:
    """The profile called ``name``; a ``ProfileError`` suggesting the closest name if there is none."""
    if extra_dir is not None and not Path(extra_dir).is_dir():
        raise ProfileError(f"profile directory {extra_dir} does not exist")
    known = available(profile_dirs(extra_dir))
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ProfileError(f"unknown fio profile {name!r}; {hint}known: {', '.join(sorted(known))}")
    return read_profile(known[name])


def read_profile(path: Path) -> Profile:
    """Parse and check one profile file."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from None
    unknown = set(data) - {"description", "fio", "sweep"}
    if unknown:
        raise ProfileError(f"{path}: unknown key {min(unknown)!r}; expected description, [fio], [sweep]")
    if not isinstance(data.get("fio"), dict) or "rw" not in data["fio"]:
        raise ProfileError(f"{path}: [fio] must set rw (read, randread, write, ...)")
    options = {key: _option(path, key, value) for key, value in data["fio"].items()}
    return Profile(path.stem, path, str(data.get("description", "")), options, _sweep(path, data.get("sweep", {})))


def _option(path: Path, key: str, value: object) -> str:
    if key in RESERVED:
        raise ProfileError(f"{path}: [fio] {key} is set by the sweep or the harness; remove it (see bench/profiles/README.md)")
    if isinstance(value, bool):
        return "1" if value else "0"
    if key in SIZE_OPTIONS:
        try:
            return str(parse_size(value))  # type: ignore[arg-type]
        except ValueError as exc:
            raise ProfileError(f"{path}: [fio] {key}: {exc}") from None
    if not isinstance(value, int | float | str):
        raise ProfileError(f"{path}: [fio] {key}: expected a string, number or boolean")
    return str(value)


def _sweep(path: Path, table: dict) -> dict[str, tuple[int, ...]]:
    out = {}
    for key, values in table.items():
        if key not in _SWEEP_KEYS or not isinstance(values, list) or not values:
            raise ProfileError(f"{path}: [sweep] {key}: expected one of bs, numjobs, iodepth with a non-empty list")
        try:
            out[key] = tuple(_SWEEP_KEYS[key](v) for v in values)
        except (ValueError, TypeError) as exc:
            raise ProfileError(f"{path}: [sweep] {key}: {exc}") from None
    return out


def fio_path(path: Path) -> str:
    """``path`` as a fio ``directory`` value: fio splits on ``:``, so colons are escaped."""
    return str(path).replace(":", "\\:")


def job_file(profile: Profile, data_dir: Path, *, bs: int, numjobs: int, iodepth: int,
             runtime: float, ramp: float, direct: bool, size: int | None) -> str:
    """The fio job file for one point.

    Everything goes in the one job section (no ``[global]``): fio then echoes
    it under ``jobs[].job options``, which is where fio-plot looks for ``rw``,
    ``iodepth`` and ``numjobs``. Job files keep per-job files (fio's default
    names): sharing a generated file set between clones is broken in fio
    (axboe/fio#1878), so each job works on its own copy.
    """
    lines = [f"# tiering bench fio: profile {profile.name} ({profile.path})", f"[{profile.name}]",
             f"directory={fio_path(data_dir)}"]
    lines += [f"{key}={value}" for key, value in profile.sized(size).items()]
    lines += [f"bs={bs}", f"numjobs={numjobs}", f"iodepth={iodepth}", "time_based=1",
              f"runtime={_seconds(runtime)}", f"ramp_time={_seconds(ramp)}", f"direct={int(direct)}"]
    return "\n".join(lines) + "\n"


def _seconds(value: float) -> str:
    # fio reads a bare number as seconds; sub-second values need a unit.
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}ms"
