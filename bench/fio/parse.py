"""fio's ``--output-format=json+`` into rows of ``bench.results.SCHEMA``.

One fio run without ``group_reporting`` reports every job (clone) on its own.
A point's figures are the jobs merged the way fio merges a group
(``sum_thread_stats`` in fio's ``stat.c``):

- bytes and I/O counts are summed; the runtime is the longest job's, so
  bandwidth and IOPS are what fio would print with ``group_reporting``;
- the mean completion latency is the sample-weighted mean of the job means;
- percentiles come from the merged latency histogram: json+ lists each job's
  non-empty ``clat_ns.bins`` (bucket value -> count), the counts are summed
  bucket by bucket, and the percentile is read off the merged histogram with
  fio's own rule (``calc_clat_percentiles``): the first bucket, in value order,
  whose running count reaches ``percent / 100 * samples``, reported as that
  bucket's value. Percentiles are never averaged across jobs.

Latencies are fio's completion latency (``clat``), the one fio reports
percentiles for by default; they are converted from nanoseconds to seconds.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

_DDIRS = ("read", "write", "trim")
_NS = 1e-9

# fio computes the rank in C ``long double``: 64-bit significands on x86, IEEE
# quad (113 bits) on aarch64, s390x, riscv64. The rounding matters only when
# percent * samples / 100 lands on a whole number (e.g. the 30th percentile of
# 100 samples), and there it decides which bucket fio reports.
_LONG_DOUBLE_BITS = 64 if platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"} else 113


def _long_double(x: Fraction) -> Fraction:
    """``x`` rounded to the nearest C long double (ties to even), as an exact fraction."""
    if x == 0:
        return x
    exponent = x.numerator.bit_length() - x.denominator.bit_length()
    if Fraction(2) ** exponent > x:
        exponent -= 1
    shift = _LONG_DOUBLE_BITS - 1 - exponent
    return Fraction(round(x * Fraction(2) ** shift)) / Fraction(2) ** shift


def fio_rank(percent: float, samples: int) -> Fraction:
    """fio's threshold ``(long double) percent / 100.0 * samples``, rounded as fio's C code rounds it."""
    return _long_double(_long_double(Fraction(percent) / 100) * samples)


def merge_bins(histograms: Iterable[Mapping[str | int, int]]) -> Counter[int]:
    """Sum json+ ``bins`` (bucket value -> count) across jobs; exact, since every job shares fio's buckets."""
    merged: Counter[int] = Counter()
    for bins in histograms:
        for value, count in bins.items():
            merged[int(value)] += int(count)
    return merged


def percentile(bins: Mapping[int, int], percent: float, samples: int | None = None) -> int | None:
    """The ``percent``-th percentile (ns) of a histogram, by fio's rule; None for an empty one.

    ``samples`` is fio's sample count (``clat_ns.N``); it defaults to the sum of the bins,
    which is the same number.
    """
    total = sum(bins.values()) if samples is None else samples
    if total <= 0:
        return None
    rank = fio_rank(percent, total)
    running = 0
    for value in sorted(bins):
        running += bins[value]
        if running >= rank:
            return value
    return max(bins)  # only reached when percent > 100


def ddirs_with_io(jobs: Sequence[Mapping]) -> list[str]:
    """The data directions (read / write / trim) that moved any I/O."""
    return [d for d in _DDIRS if any(job.get(d, {}).get("total_ios", 0) for job in jobs)]


def merge_jobs(jobs: Sequence[Mapping], ddir: str) -> dict:
    """The figures of one data direction, merged across ``jobs`` (fio json+ ``jobs[]`` entries)."""
    stats = [job[ddir] for job in jobs]
    runtime_s = max(s["runtime"] for s in stats) / 1000  # fio reports ms
    nbytes = sum(s["io_bytes"] for s in stats)
    ios = sum(s["total_ios"] for s in stats)
    clat = [s["clat_ns"] for s in stats]
    samples = sum(c["N"] for c in clat)
    bins = merge_bins(c.get("bins", {}) for c in clat)

    def pct(p: float) -> float | None:
        value = percentile(bins, p, samples)
        return None if value is None else value * _NS

    return {
        "runtime_s": runtime_s,
        "bytes": nbytes,
        "bw_bytes_s": nbytes / runtime_s if runtime_s else 0.0,
        "iops": ios / runtime_s if runtime_s else 0.0,
        "lat_mean_s": sum(c["mean"] * c["N"] for c in clat) / samples * _NS if samples else None,
        "lat_p50_s": pct(50.0),
        "lat_p99_s": pct(99.0),
        "lat_p999_s": pct(99.9),
    }


def rows(fio_json: Mapping, mode: str, **context) -> list[dict]:
    """Rows for one fio run: one per data direction that did I/O (a mixed workload gives two).

    ``context`` supplies the columns fio does not know (campaign, tier, target,
    profile, block_size, numjobs, iodepth, warning, result_path). ``op`` is the
    fio mode, suffixed with the direction for mixed modes (``randrw:read``).
    """
    jobs = fio_json.get("jobs") or []
    if not jobs:
        raise ValueError("fio output has no jobs")
    ddirs = ddirs_with_io(jobs) or [_primary(mode)]
    return [{"engine": "fio", **context, "op": mode if len(ddirs) == 1 else f"{mode}:{d}", **merge_jobs(jobs, d)}
            for d in ddirs]


def _primary(mode: str) -> str:
    return "write" if "write" in mode else "trim" if "trim" in mode else "read"
