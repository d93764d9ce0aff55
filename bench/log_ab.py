#!/usr/bin/env python3
"""Only bench.py's log scenarios: one or more sup binaries against `cat > file`, interleaved.

    bench/.venv/bin/python bench/log_ab.py --sup base=/path/to/old/sup --sup new=target/release/sup

Each repetition runs, for the plain file and then for the one rotated every LOG_ROTATE bytes,
every sup given and the cat reference in turn, so that a busy moment hurts them alike. Prints
each run, the median MB/s and daemon CPU (from /proc/PID/schedstat while the bytes moved) of
each, and each sup's ratio to cat: of the medians, and the median of the ratios within a
repetition (which a load that changes between repetitions disturbs less).
"""

import argparse
import shutil
import statistics
from pathlib import Path

import bench


def schedstat_seconds(pid):
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sup", action="append", required=True, help="LABEL=PATH, repeatable")
    ap.add_argument("--reps", type=int, default=bench.LOG_REPS)
    ap.add_argument("--variants", default="plain,rotated")
    args = ap.parse_args()
    sups = [s.split("=", 1) for s in args.sup]
    bench.cpu_seconds = schedstat_seconds  # finer than utime+stime's clock ticks
    b = bench.Bench(argparse.Namespace(sup=sups[0][1], raw=bench.HERE / "raw/raw",
                                       venv=bench.HERE / ".venv"))
    mb, cpu = {}, {}
    try:
        for rep in range(args.reps):
            for var in args.variants.split(","):
                for label, path in [*sups, ("cat", None)]:
                    if path:
                        b.sup = Path(path).resolve()
                    r = bench.scenario_log(b, bench.Sup if path else bench.Raw,
                                           rotate=var == "rotated")
                    mb.setdefault((var, label), []).append(r["mb_s"])
                    cpu.setdefault((var, label), []).append(r.get("daemon_cpu_s") or 0)
                    print(f"#{rep} {var} {label}: {r['mb_s']} MB/s, daemon CPU "
                          f"{r.get('daemon_cpu_s', '-')} s, {r['files']} files", flush=True)
                    b.sweep()
    finally:
        b.sweep()
        shutil.rmtree(b.root, ignore_errors=True)
    for (var, label), v in sorted(mb.items()):
        line = f"{var:8} {label:8} median {statistics.median(v):6.1f} MB/s"
        if label != "cat":
            ref = mb[(var, "cat")]
            paired = statistics.median(a / c for a, c in zip(v, ref))
            line += (f", CPU {statistics.median(cpu[(var, label)]):.3f} s; / cat: "
                     f"{statistics.median(v) / statistics.median(ref):.2f} (medians), "
                     f"{paired:.2f} (paired)")
        print(line)


if __name__ == "__main__":
    main()
