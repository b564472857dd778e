"""The command line's contract, verb by verb, in every bad environment (issue 15, items 4 and 6).

Each cell of the matrix runs one verb of the installed ``tiering`` console
script as a real subprocess in one broken environment, and asserts what a
person at a terminal gets: one line on stderr saying what is wrong, never a
``Traceback``, and the documented exit status (``tiering.core.errors``: 1 some
items failed or a full disk; 2 usage, configuration, policy or credentials;
3 a tier unreachable). A failing cell's id names the verb and the environment.

The environments are real: a hot tier that is not there, a file operand that
is not there, a config that is malformed or cannot be read, policies with a
syntax error and with a type error, an S3 tier on a closed loopback port, and
a 1 MiB tmpfs (mounted here: the tests need root) that is full, holding the
catalog and every destination.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import closed_port, is_root

BIN = Path(sys.executable).with_name("tiering")
#: Every cell must come back this fast: a short retry policy, no real work.
TIMEOUT = 20.0
#: The daemon runs until told to stop: a bad environment must end it sooner than this.
DAEMON_GRACE = 6.0
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING) ")

POLICY = """\
[[rules]]
name = "everything"
match = 'size >= 0'
action = "archive"

[safety]
min_age = "0s"
"""
POLICY_SYNTAX = POLICY.replace("'size >= 0'", "'size >'")
POLICY_TYPE = POLICY.replace("'size >= 0'", "'size > \"big\"'")


@dataclass
class Env:
    """One workspace: a config, its hot tier and policy, and the operands each verb is given."""

    root: Path
    config: Path
    hot: Path
    operand: Path  # the file named to archive, release and status
    src: Path  # migrate/sync source folder
    dst: Path  # migrate/sync destination folder
    target: Path  # bench fio --target
    results: Path  # bench report DIRECTORY
    report_out: Path  # bench report --out
    env: dict[str, str] = field(default_factory=dict)
    src_url: str = ""  # migrate/sync SRC (default: the src folder)
    src_options: list[str] = field(default_factory=list)
    bench_tier: str = "cap"  # bench objects/dataloader --tier
    released: Path | None = None  # the file named to restore (default: operand)
    archived: Path | None = None  # the file named to status --verify (default: operand)
    extra: dict[str, list[str]] = field(default_factory=dict)  # verb -> more arguments (a later option wins)


# -- the verbs ------------------------------------------------------------------------------------------------

def _c(e: Env) -> list[str]:
    return ["-c", str(e.config)]


VERBS: dict[str, Callable[[Env], list[str]]] = {
    "config-check": lambda e: ["config", "check", str(e.config)],
    "config-check-probe": lambda e: ["config", "check", str(e.config), "--probe"],
    "scan": lambda e: ["scan", *_c(e)],
    "plan": lambda e: ["plan", *_c(e)],
    "apply": lambda e: ["apply", *_c(e)],
    "apply-dry-run": lambda e: ["apply", "--dry-run", *_c(e)],
    "archive": lambda e: ["archive", *_c(e), str(e.operand)],
    "release": lambda e: ["release", *_c(e), str(e.operand)],
    "restore": lambda e: ["restore", *_c(e), str(e.released or e.operand)],
    "recover": lambda e: ["recover", *_c(e)],
    "status": lambda e: ["status", *_c(e)],
    "status-path": lambda e: ["status", *_c(e), str(e.operand)],
    "status-verify": lambda e: ["status", *_c(e), "--verify", str(e.archived or e.operand)],
    "run": lambda e: ["run", *_c(e)],
    "daemon": lambda e: ["daemon", *_c(e)],
    "demo": lambda e: ["demo", *_c(e)],
    "migrate": lambda e: ["migrate", e.src_url or str(e.src), str(e.dst), *e.src_options],
    "sync": lambda e: ["sync", "--delete", e.src_url or str(e.src), str(e.dst), *e.src_options],
    "bench-fio": lambda e: ["bench", "fio", "--target", str(e.target), "--profile", "randread-4k", "--numjobs", "1",
                            "--iodepth", "1", "--bs", "4KiB", "--size", "256KiB", "--runtime", "1", "--ramp", "0",
                            "--no-drop-caches"],
    "bench-objects": lambda e: ["bench", "objects", "--config", str(e.config), "--tier", e.bench_tier, "--sizes",
                                "4KiB", "--concurrency", "1", "--total", "8KiB", "--epoch-objects", "0"],
    "bench-dataloader": lambda e: ["bench", "dataloader", "--config", str(e.config), "--tier", e.bench_tier,
                                   "--samples", "8", "--sample-size", "4KiB", "--workers", "1", "--batch", "4",
                                   "--compute-ms", "0", "--max-accelerators", "1"],
    "bench-report": lambda e: ["bench", "report", str(e.results), "--out", str(e.report_out)],
}

# -- the environments -----------------------------------------------------------------------------------------


def _workspace(root: Path, *, hot: Path | None = None, catalog: Path | None = None, capacity: Path | None = None,
               policy: str = POLICY, tiers: str = "", default_tier: str = "cap") -> Env:
    """A working setup; each environment below then breaks one thing."""
    hot = hot or root / "hot"
    if hot.parent.exists():
        hot.mkdir(exist_ok=True)
        (hot / "a.bin").write_bytes(os.urandom(4096))
    capacity = capacity or root / "capacity"
    capacity.mkdir(parents=True, exist_ok=True)
    (root / "policy.toml").write_text(policy)
    config = root / "tiering.toml"
    config.write_text(
        f'default_tier = "{default_tier}"\npolicy = "policy.toml"\n[hot]\npath = "{hot}"\n'
        f'[catalog]\npath = "{catalog or root / "state" / "catalog.db"}"\n'
        '[retry]\nattempts = 2\nmax_backoff = "100ms"\ndeadline = "1s"\n'
        '[daemon]\nmetrics_port = 0\ninterval = "1h"\nstop_timeout = "2s"\n'
        f'[tiers.cap]\nurl = "{capacity}"\n{tiers}')
    src = root / "src"
    src.mkdir(exist_ok=True)
    (src / "one.bin").write_bytes(b"x" * 1000)
    results = root / "results"
    results.mkdir(exist_ok=True)
    return Env(root=root, config=config, hot=hot, operand=hot / "a.bin", src=src, dst=root / "dst",
               target=root / "fio", results=results, report_out=root / "report")


def missing_hot(root: Path) -> Env:
    e = _workspace(root, hot=root / "gone" / "hot")
    e.bench_tier = "hot"
    return e


def missing_file(root: Path) -> Env:
    e = _workspace(root)
    gone = root / "no-such"
    e.operand, e.src, e.target, e.results = e.hot / "no-such.bin", gone, gone, gone
    return e


def missing_config(root: Path) -> Env:
    e = _workspace(root)
    e.config = root / "no-such.toml"
    return e


def malformed_config(root: Path) -> Env:
    """A config that is not TOML, and (for ``bench report``) a results file that is not Parquet."""
    e = _workspace(root)
    e.config.write_text('[hot\npath = "hot"\n')
    (e.results / "results.parquet").write_bytes(b"")
    return e


def unreadable_config(root: Path) -> Env:
    """A config path that cannot be read even by root: it is a folder."""
    e = _workspace(root)
    e.config.unlink()
    e.config.mkdir()
    return e


def policy_syntax(root: Path) -> Env:
    return _workspace(root, policy=POLICY_SYNTAX)


def policy_type(root: Path) -> Env:
    return _workspace(root, policy=POLICY_TYPE)


def dead_endpoint(root: Path) -> Env:
    """The default tier is S3 on a loopback port where nothing listens; one file is resident, one archived
    there, one released there."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    e = _workspace(root, default_tier="s3", tiers=(
        f'[tiers.s3]\nurl = "s3://bucket/prefix"\nendpoint = "{endpoint}"\naccess_key_id = "key"\n'
        'secret_access_key = "${CONTRACT_SECRET}"\n'))
    e.env = {"CONTRACT_SECRET": "secret", "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"}
    e.src_url, e.src_options = "s3://bucket/prefix", ["--src-option", f"endpoint={endpoint}"]
    e.bench_tier = "s3"
    _catalog_records(e)
    return e


def _catalog_records(e: Env) -> None:
    """``archived.bin`` archived to s3 and ``released.bin`` released there (a zero-length stub), as if done earlier."""
    from tiering.catalog import Catalog, FileRecord

    e.archived, e.released = e.hot / "archived.bin", e.hot / "released.bin"
    e.archived.write_bytes(b"y" * 100)
    e.released.write_bytes(b"")
    with Catalog.open(e.root / "state" / "catalog.db", writer=True, purpose="test") as cat:
        cat.put(FileRecord(b"released.bin", "released", tier="s3", object_key="released.bin",
                           checksum="blake3:00", size=4096))
        st = e.archived.stat()
        cat.put(FileRecord(b"archived.bin", "archived", tier="s3", object_key="archived.bin", checksum="blake3:00",
                           size=100, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, ino=st.st_ino))


def full_disk(root: Path) -> Env:
    """The catalog, the capacity tier and every destination on a small tmpfs with no space left."""
    disk = root / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    e = _workspace(root, catalog=disk / "state" / "catalog.db", capacity=disk / "capacity")
    from bench.campaign import write_results
    from tiering.catalog import Catalog

    Catalog.open(disk / "state" / "catalog.db", writer=True, purpose="test").close()
    write_results([{"campaign": "c", "engine": "objects", "tier": "cap", "target": "t", "profile": "objects",
                    "op": "get", "block_size": 4096, "numjobs": n, "bw_bytes_s": 1e6 * n} for n in (1, 2, 4)],
                  e.results)  # something for the report to (fail to) write about
    e.dst, e.target, e.report_out = disk / "dst", disk / "fio", disk / "report"
    e.target.mkdir()
    with open(disk / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass
    return e


def bad_size(root: Path) -> Env:
    """Sizes no one can parse, where each verb takes one."""
    e = _workspace(root)
    e.extra = {"bench-objects": ["--sizes", "64XB"], "bench-dataloader": ["--sample-size", "64XB"],
               "bench-fio": ["--bs", "4XB"], "migrate": ["--min-size", "1XB"], "sync": ["--max-size", "-1"]}
    return e


ENVIRONMENTS: dict[str, Callable[[Path], Env]] = {
    "missing-hot": missing_hot, "missing-file": missing_file, "missing-config": missing_config,
    "malformed-config": malformed_config, "unreadable-config": unreadable_config,
    "policy-syntax": policy_syntax, "policy-type": policy_type,
    "dead-endpoint": dead_endpoint, "full-disk": full_disk, "bad-size": bad_size,
}

# -- what each cell must end with --------------------------------------------------------------------------------

USAGE, FAILED, STORE = 2, 1, 3
#: Verbs that read a config (every one but bench fio and bench report, which take no config).
CONFIGURED = [v for v in VERBS if v not in ("bench-fio", "bench-report", "migrate", "sync")]
#: Verbs that load the policy.
POLICED = ["plan", "apply", "apply-dry-run", "run", "daemon", "demo"]

EXPECTED: dict[str, dict[str, int]] = {
    # The hot tier is part of the configuration: a config naming a missing one is a usage error
    # (`demo` creates its hot tier; `bench objects` measures a capacity tier only; `config check` checks
    # the file, `--probe` the places it names).
    "missing-hot": {v: USAGE for v in CONFIGURED if v not in ("demo", "bench-objects", "config-check")},
    # A named file that is not there fails its item (1); a missing folder that is the whole input is usage (2).
    "missing-file": {"archive": FAILED, "release": FAILED, "restore": FAILED, "status-path": FAILED,
                     "status-verify": FAILED, "migrate": USAGE, "sync": USAGE, "bench-fio": USAGE,
                     "bench-report": USAGE},
    "missing-config": {v: USAGE for v in CONFIGURED},
    "malformed-config": {**{v: USAGE for v in CONFIGURED}, "bench-report": USAGE},
    "unreadable-config": {v: USAGE for v in CONFIGURED},
    "policy-syntax": {v: USAGE for v in POLICED},
    "policy-type": {v: USAGE for v in POLICED},
    "dead-endpoint": {"config-check-probe": STORE, "apply": STORE, "archive": STORE, "release": STORE,
                      "restore": STORE, "status-verify": STORE, "run": STORE, "demo": STORE, "migrate": STORE,
                      "sync": STORE, "bench-objects": STORE, "bench-dataloader": STORE,
                      # The daemon outlives an unreachable tier (the next cycle tries again), says so once,
                      # and stops cleanly on SIGTERM.
                      "daemon": 0},
    # A full local disk (the catalog's, a destination folder) is 1; a full capacity tier cannot take
    # anything more, like an unreachable one: 3.
    "full-disk": {"scan": FAILED, "plan": FAILED, "apply": FAILED, "apply-dry-run": FAILED, "archive": FAILED,
                  "release": FAILED, "restore": FAILED, "recover": FAILED, "run": FAILED, "daemon": FAILED, "demo": FAILED, "migrate": FAILED,
                  "sync": FAILED, "bench-fio": FAILED, "bench-objects": STORE, "bench-dataloader": STORE,
                  "bench-report": FAILED},
    "bad-size": {"bench-objects": USAGE, "bench-dataloader": USAGE, "bench-fio": USAGE, "migrate": USAGE,
                 "sync": USAGE},
}

CELLS = [
    pytest.param(verb, env, code, id=f"{verb}-{env}",
                 )
    for env, verbs in EXPECTED.items() for verb, code in verbs.items()
]


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[[str], Env]]:
    made: list[Env] = []

    def make(name: str) -> Env:
        if name == "full-disk" and not is_root():
            pytest.skip("mounting a tmpfs needs root")
        made.append(ENVIRONMENTS[name](tmp_path))
        return made[-1]

    yield make
    if (tmp_path / "disk").is_mount():
        subprocess.run(["umount", "-l", str(tmp_path / "disk")], check=True)


def tiering(args: list[str], env: Env, daemon: bool = False) -> tuple[subprocess.CompletedProcess, bool]:
    """The console script as a person runs it, and whether it had to be stopped with SIGTERM (the daemon:
    when a bad environment did not end it within ``DAEMON_GRACE``; any other verb: never)."""
    command = [str(BIN) if BIN.exists() else sys.executable, *([] if BIN.exists() else ["-m", "tiering"]), *args]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TIERING_", "AWS_", "OSS_"))}
    proc = subprocess.Popen(command, cwd=env.root, env={**environ, **env.env}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped = False
    try:
        out, err = proc.communicate(timeout=DAEMON_GRACE if daemon else TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
        stopped = True
    return subprocess.CompletedProcess(command, proc.returncode, out, err), stopped


def error_lines(stderr: str) -> list[str]:
    """stderr without the INFO/DEBUG/WARNING log lines that `run` and `daemon` write there by design."""
    return [line for line in stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]


@pytest.mark.parametrize(("verb", "env_name", "code"), CELLS)
def test_verb_in_a_bad_environment(verb, env_name, code, make_env):
    env = make_env(env_name)
    done, stopped = tiering(VERBS[verb](env) + env.extra.get(verb, []), env, daemon=verb == "daemon")
    shown = (f"rc {done.returncode}{' after SIGTERM' if stopped else ''}\n--- stdout\n{done.stdout[-2000:]}\n"
             f"--- stderr\n{done.stderr[-4000:]}")
    assert stopped == (code == 0), shown  # an error ends every verb by itself; only a healthy daemon runs on
    assert "Traceback" not in done.stderr + done.stdout, shown
    lines = error_lines(done.stderr)
    assert len(lines) == 1, shown
    assert done.returncode == code, shown
