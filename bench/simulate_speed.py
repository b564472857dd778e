"""How fast ``tiering simulate`` replays a month: synthetic training workload, two policies, one hot-tier size.

    python -m bench.simulate_speed [--files 1000000] [--accesses 10000000] [--days 30] [--capacity 0.3]
                                   [--interval 1h] [--step 5m] [--json]

Generates the workload (``tiering.trace.generate``; timed apart), then replays it under
a per-file LRU watermark policy and the same policy with ``[datasets]`` (dataset-level
heat and stage-in), printing for each: wall time, cycles and the planner's share of it,
accesses replayed per second, and the hit ratio. Every cycle runs the real planner over
every present file, so the time grows with files x cycles (``--interval``) more than with
accesses. The machine is what it is: say how loaded it was (``uptime``) with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

from tiering.core.units import parse_duration
from tiering.ops.simulate import Scenario, simulate
from tiering.ops.simulate.report import Prices
from tiering.policy import parse_policy
from tiering.trace.generate import Workload, generate

LRU = '[watermark]\nhigh = "90%"\nlow = "80%"\norder = "lru"\n[safety]\nmin_age = "1h"\n'
DATASETS = LRU + '[datasets]\nmarkers = [".dataset"]\n'


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.simulate_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--accesses", type=int, default=10_000_000)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--capacity", type=float, default=0.3, help="hot tier as a share of the inventory's bytes")
    ap.add_argument("--interval", default="1h")
    ap.add_argument("--step", default="5m")
    ap.add_argument("--policies", default="per-file,dataset")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    t0, cpu0 = time.perf_counter(), time.process_time()
    inventory, trace = generate(Workload(files=args.files, accesses=args.accesses, days=args.days))
    generated, cpu_generated = time.perf_counter() - t0, time.process_time() - cpu0
    chosen = [(name, parse_policy({"per-file": LRU, "dataset": DATASETS}[name], name))
              for name in args.policies.split(",")]
    scenario = Scenario(capacity=1, interval=parse_duration(args.interval), step=parse_duration(args.step))
    cpu1 = time.process_time()
    sim = simulate(trace, inventory, chosen, [args.capacity], scenario, prices=Prices.of(None, None))
    cpu_replays = time.process_time() - cpu1
    load = os.getloadavg()
    out = {"files": inventory.num_rows, "accesses": trace.num_rows, "days": args.days, "cpus": os.cpu_count(),
           "load_average_1m": round(load[0], 2), "generate_seconds": round(generated, 2),
           "prepare_seconds": round(sim.prepare_seconds, 2), "generate_cpu_seconds": round(cpu_generated, 1),
           "replay_cpu_seconds": round(cpu_replays, 1),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "replays": []}
    for r, row in zip(sim.replays, sim.rows):
        out["replays"].append({"policy": r.policy, "seconds": round(r.seconds, 1), "cycles": r.cycles,
                               "plan_seconds": round(r.plan_seconds, 1),
                               "seconds_per_cycle": round(r.plan_seconds / max(1, r.cycles), 3),
                               "accesses_per_second": int(sim.accesses / max(r.seconds, 1e-9)),
                               "hit_ratio": row["hit_ratio"], "byte_hit_ratio": row["byte_hit_ratio"]})
    if args.json:
        print(json.dumps(out))
        return
    print(f"workload: {out['files']:,} files, {out['accesses']:,} accesses over {args.days:g} days "
          f"(generated in {generated:.1f}s, prepared in {sim.prepare_seconds:.1f}s); {out['cpus']} CPUs, "
          f"load average {load[0]:.1f}; peak RSS {out['peak_rss_mib']:,} MiB; CPU time of the replays "
          f"{cpu_replays:.0f}s (both cores: wall time on an idle machine is about half to all of it)")
    for r in out["replays"]:
        print(f"{r['policy']:>9}: {r['seconds']:.1f}s for the replay ({r['cycles']:,} cycles, "
              f"{r['seconds_per_cycle']:.3f}s each planning; {r['accesses_per_second']:,} accesses/s); "
              f"hit ratio {r['hit_ratio']:.1%} of reads, {r['byte_hit_ratio']:.1%} of bytes")


if __name__ == "__main__":
    main()
