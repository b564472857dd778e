"""What ``tiering VERB --help`` ends with: examples, and value names people read (``PATH``, ``SIZE``).

The examples assume ``TIERING_CONFIG`` (or ``-c FILE``) names the config, as
the README's tour does after ``make run``.
"""

from __future__ import annotations

_EXAMPLES = {
    "demo": ["tiering demo -c configs/local.toml        # what `make run` runs",
             "TIERING_HOME=/tmp/demo tiering demo -c configs/local.toml   # a workspace elsewhere"],
    "scan": ["tiering scan                              # snapshot the hot tier",
             "tiering scan --json -o /tmp/inventory.parquet"],
    "plan": ["tiering plan                              # what would move, per rule",
             "tiering plan --explain datasets/old-corpus/shards/shard-00003.tar",
             "tiering plan --json --rescan | head"],
    "apply": ["tiering apply --dry-run                   # the plan, nothing changed",
              "tiering apply -j 32",
              "tiering apply --policy policies/watermark.toml --json"],
    "archive": ["tiering archive datasets/old-corpus      # a folder: every file under it",
                "tiering archive runs/exp-1 --include '*.pt' --min-age 7d --dry-run",
                "find datasets -name '*.tar' | tiering archive --manifest -"],
    "release": ["tiering release runs/exp-1/checkpoints/step-1000.pt",
                "tiering release datasets/old-corpus --min-size 1MiB --dry-run",
                "tiering release runs --include 'checkpoints/*' --min-age 14d --json"],
    "restore": ["tiering restore datasets/old-corpus       # stage a folder back in",
                "tiering restore --manifest dataset.txt    # text, JSON or Parquet list of paths",
                "cat dataset.txt | tiering restore --manifest - -q"],
    "recover": ["tiering recover                           # settle what a killed run left open",
                "tiering recover --json -q"],
    "status": ["tiering status                            # usage, files by state, last run",
               "tiering status datasets/old-corpus/shards/shard-00000.tar --verify"],
    "reconcile": ["tiering reconcile                         # hot tier vs catalog vs buckets, by kind",
                  "tiering reconcile --fix --json             # repair what is safe; never deletes"],
    "cost": ["tiering cost                              # per tier/class per month, and what the plan changes",
             "tiering cost --no-plan --json --parquet /tmp/cost.parquet   # a dashboard row per tier/class"],
    "simulate": ["tiering trace generate /tmp/wl --files 100000 --accesses 1000000   # or a recorded trace",
                 "tiering simulate --trace /tmp/wl/trace.parquet --inventory /tmp/wl/inventory.parquet \\",
                 "    -p policies/watermark.toml -p my-datasets.toml --capacity 20% --capacity 40% --plot /tmp/sim.png"],
    "export": ["tiering trace export /tmp/trace.parquet     # what the daemon and the guard recorded",
               "tiering trace export /tmp/june.csv --since 2026-06-01 --until 2026-07-01"],
    "generate": ["tiering trace generate /tmp/wl --files 1000000 --accesses 10000000 --days 30"],
    "run": ["tiering run                               # one cycle, as cron runs it",
            "tiering run --json -q >> /var/log/tiering-runs.jsonl"],
    "daemon": ["tiering daemon -c /etc/tiering/tiering.toml",
               "tiering daemon -v                         # debug logging on stderr"],
    "guard": ["tiering guard -c /etc/tiering/tiering.toml   # root; `tiering daemon` starts one by itself",
              "tiering status                              # says 'guard: active' while it serves"],
    "migrate": ["tiering migrate ./dataset s3://bucket/dataset",
                "tiering migrate s3://bucket/dataset ./dataset --include '*.jpg' --dry-run",
                "tiering migrate ./dataset hdd --min-age 30d      # a tier of the config, by name"],
    "sync": ["tiering sync ./dataset s3://bucket/dataset --delete --dry-run",
             "tiering sync s3://bucket/dataset ./dataset --checksum"],
    "check": ["tiering config check                      # the config found by default",
              "tiering config check -c configs/example.toml --probe"],
    "objects": ["tiering bench objects --tier s3 --sizes 64KiB,16MiB --concurrency 1,16",
                "tiering bench objects --tier hdd --epoch-objects 0 --out bench-results --json"],
    "fio": ["tiering bench fio --target /mnt/nvme/bench --profile small-files --runtime 10",
            "tiering bench fio --target /mnt/nvme/bench --profile large-shards --numjobs 1,4 --direct"],
    "dataloader": ["tiering bench dataloader --tier hot --workers 1,4 --samples 2048",
                   "tiering bench dataloader --tier s3 --compute-ms 20 --out bench-results"],
    "report": ["tiering bench report bench-results             # Markdown, plots beside it",
               "tiering bench report bench-results --format html --out /tmp/report"],
}

#: ``tiering VERB --help`` epilogs (``\b`` keeps click from re-wrapping the lines).
EXAMPLES = {verb: "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines) for verb, lines in _EXAMPLES.items()}

#: Value names by parameter name, for options that do not set their own ``metavar``.
_BY_NAME = {
    "config": "PATH", "policy": "PATH", "out": "PATH", "inventory": "PATH", "manifest": "PATH", "target": "PATH",
    "profile_dir": "PATH", "directory": "PATH", "file": "PATH", "paths": "PATH",
    "jobs": "N", "top": "N", "batch": "N", "samples": "N", "epochs": "N", "max_accelerators": "N",
    "epoch_objects": "N", "tier": "TIER", "src": "SRC", "dst": "DST", "executor": "URL",
    "include": "GLOB", "exclude": "GLOB", "min_size": "SIZE", "max_size": "SIZE", "bwlimit": "SIZE",
    "sample_size": "SIZE", "epoch_size": "SIZE", "total": "SIZE", "size": "SIZE", "min_age": "DURATION",
    "max_age": "DURATION", "runtime": "SECONDS", "ramp": "SECONDS", "compute_ms": "MS", "read_delay_ms": "MS",
    "explain": "PATH", "src_option": "KEY=VALUE", "dst_option": "KEY=VALUE", "sizes": "SIZE,...",
    "concurrency": "N,...", "workers": "N,...", "numjobs": "N,...", "iodepth": "N,...", "bs": "SIZE,...",
    "profile": "NAME", "fmt": "md|html",
}
_BY_TYPE = {"integer": "N", "integer range": "N", "float": "NUMBER", "float range": "NUMBER", "path": "PATH",
            "text": "TEXT"}


def tidy_metavars(command) -> None:
    """Give every parameter of ``command`` (a click command or group, recursively) a readable value name.

    Flags show none; other parameters without their own ``metavar`` get one from
    their name (``min_size`` -> ``SIZE``) or their type (``int`` -> ``N``).
    """
    for param in command.params:
        if param.metavar is not None:
            pass
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        elif param.name in _BY_NAME:
            param.metavar = _BY_NAME[param.name]
        else:
            param.metavar = _BY_TYPE.get(getattr(getattr(param, "type", None), "name", ""), "VALUE")
        if param.param_type_name == "argument":
            _plain_argument(param)
    for sub in getattr(command, "commands", {}).values():
        tidy_metavars(sub)


def _plain_argument(param) -> None:
    # typer prints an argument as "{NAME}... <list[str]>"; people read "NAME..." (and "[NAME]..." when optional).
    many = "..." if param.nargs != 1 else ""
    shown = f"{param.metavar}{many}" if param.required else f"[{param.metavar}]{many}"
    param.display_type_rich = lambda ctx: None
    param._usage_display_name = lambda: shown
    param.make_metavar = lambda ctx=None: shown
