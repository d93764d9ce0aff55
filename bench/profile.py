#!/usr/bin/env python3
"""Run one bench scenario against sup with the daemon under a profiler.

Build the profiling binary first (release code with debug info, so perf can unwind and name
frames; the release profile has none): `cargo build --profile profiling`.

    bench/.venv/bin/python bench/profile.py --n 1000 --scenario restart \\
        --wrap "perf record -e cpu-clock -F 4000 --call-graph dwarf -o /tmp/sup.perf --"
    bench/.venv/bin/python bench/profile.py --n 1000 --scenario status \
        --attach "perf record -e cpu-clock -F 4000 --call-graph dwarf -p {pid} -o /tmp/sup.perf"

The daemon is started as `WRAP sup daemon …`; the spawn scenario always runs first (the others
need N running), then the one asked for, then `sup shutdown`. Numbers printed here are inflated
by the profiler: use them to find where time goes, not as results.
"""

import argparse
import shlex
import shutil
import signal
import subprocess
import time

import bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--scenario", choices=["spawn", "restart", "status", "stop_all"],
                    default="spawn")
    ap.add_argument("--wrap", default="", help="command prefix for the daemon")
    ap.add_argument("--attach", default="",
                    help="profiler started after the spawn, for the scenario alone; {pid} is the "
                         "daemon's pid; stopped with SIGINT (e.g. \"perf record -p {pid} -o F\")")
    ap.add_argument("--sup", default=bench.REPO / "target/profiling/sup")
    args = ap.parse_args()
    b = bench.Bench(argparse.Namespace(sup=args.sup, raw=bench.HERE / "raw/raw",
                                       venv=bench.HERE / ".venv"))
    wrap = shlex.split(args.wrap)

    class Wrapped(bench.Sup):
        def launch(self, argv):
            super().launch(wrap + argv)

    tool = Wrapped(b, args.n, "profile")
    try:
        print("spawn", bench.scenario_spawn(tool))
        prof = None
        if args.attach:
            prof = subprocess.Popen(shlex.split(args.attach.format(pid=tool.pid)))
            time.sleep(1)  # let it attach
        if args.scenario == "restart":
            r = bench.scenario_restart(tool, 50)
            print("restart p50 %.2f ms p99 %.2f ms" % (r["p50_s"] * 1e3, r["p99_s"] * 1e3))
        elif args.scenario == "status":
            print("status p50 %.2f ms" % (bench.scenario_status(tool)["p50_s"] * 1e3))
        elif args.scenario == "stop_all":
            print("stop_all", bench.scenario_stop_all(tool))
        if prof:
            prof.send_signal(signal.SIGINT)
            prof.wait(timeout=60)
    finally:
        tool.finish(timeout=120)
        b.sweep()
        shutil.rmtree(b.root, ignore_errors=True)


if __name__ == "__main__":
    main()
