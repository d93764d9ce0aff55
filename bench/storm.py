#!/usr/bin/env python3
"""The restart storm alone: daemon CPU per restart and restart latency as N grows.

For each N and each binary (interleaved, A B A B …, since the host is shared): start N
instances, kill -9 a different one every 50 ms (`bench.scenario_restart`), print the
daemon's utime+stime per restart and the latency p50. `--raw` adds the raw fork/exec loop.

    bench/.venv/bin/python bench/storm.py --sup /tmp/base-sup --sup target/release/sup \\
        --sizes 100,1000,5000 --kills 300 --reps 2 [--raw]

N=10000 needs `ulimit -n 20000` in the calling shell.
"""

import argparse
import shutil
import statistics

import bench


def one(b, cls, n, kills):
    tool = cls(b, n, f"storm{n}")
    try:
        bench.scenario_spawn(tool)
        bench.scenario_idle(tool, 1)
        return bench.scenario_restart(tool, kills)
    finally:
        tool.finish(timeout=120)
        b.sweep()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sup", action="append", required=True)
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--kills", type=int, default=300)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--raw", action="store_true")
    args = ap.parse_args()
    runs = [(s, bench.Sup) for s in args.sup] + ([("raw", bench.Raw)] if args.raw else [])
    for n in [int(s) for s in args.sizes.split(",")]:
        got = {label: [] for label, _ in runs}
        for _ in range(args.reps):
            for label, cls in runs:
                b = bench.Bench(argparse.Namespace(sup=label if cls is bench.Sup else args.sup[0],
                                                   raw=bench.HERE / "raw/raw",
                                                   venv=bench.HERE / ".venv"))
                try:
                    r = one(b, cls, n, args.kills)
                finally:
                    shutil.rmtree(b.root, ignore_errors=True)
                got[label].append(r)
                print(f"N={n:<6} {label:<32} cpu/restart {r['daemon_cpu_per_restart_s'] * 1e3:6.3f} ms"
                      f"  p50 {r['p50_s'] * 1e3:6.2f} ms  p99 {r['p99_s'] * 1e3:6.2f} ms", flush=True)
        for label, rs in got.items():
            cpu = statistics.median(r["daemon_cpu_per_restart_s"] for r in rs) * 1e3
            p50 = statistics.median(r["p50_s"] for r in rs) * 1e3
            print(f"= N={n:<6} {label:<32} median cpu/restart {cpu:6.3f} ms  p50 {p50:6.2f} ms",
                  flush=True)


if __name__ == "__main__":
    main()
