"""Turns bench.py's results into the markdown table, the plot and docs/benchmarks.md."""

from pathlib import Path

TOOLS = ("sup", "supervisord", "raw")


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _status_cpu(r):
    d, c = _get(r, "status", "daemon_cpu_per_call_s"), _get(r, "status", "client_cpu_per_call_s")
    return None if d is None or c is None else d + c


def rows(results):
    """One row per (scenario, N): label, unit, values per tool, target text, check(sup, raw)."""
    out = []
    runs = results["runs"]
    specs = [
        # label, unit, path, scale, lower is better, target text, target check
        ("spawn", "s", ("spawn", "seconds"), 1, {"1000": ("≤ 1.25× raw", lambda s, r: s <= 1.25 * r)}),
        ("idle wakeups", "/s", ("idle", "wakeups_per_s"), 1, {"1000": ("0 /s", lambda s, r: s == 0)}),
        ("idle CPU", "s", ("idle", "cpu_s"), 1, {}),
        ("idle RSS", "MiB", ("idle", "rss_kib"), 1 / 1024, {}),
        ("idle PSS", "MiB", ("idle", "pss_kib"), 1 / 1024, {"1000": ("≤ 5 MiB", lambda s, r: s <= 5)}),
        ("restart p50", "ms", ("restart", "p50_s"), 1e3,
         {"1000": ("≤ 1.2× raw", lambda s, r: s <= 1.2 * r)}),
        ("restart p99", "ms", ("restart", "p99_s"), 1e3, {}),
        ("stop-all", "s", ("stop_all", "seconds"), 1, {"1000": ("≤ 1.5× raw", lambda s, r: s <= 1.5 * r)}),
        ("status p50", "ms", ("status", "p50_s"), 1e3, {"1000": ("< 10 ms", lambda s, r: s < 10)}),
        # CPU rather than wall time: what a busy machine does not inflate.
        ("spawn, supervisor CPU", "s", ("spawn", "daemon_cpu_s"), 1,
         {"1000": ("≤ 3× raw", lambda s, r: s <= 3 * r)}),
        ("restart, supervisor CPU each", "ms", ("restart", "daemon_cpu_per_restart_s"), 1e3, {}),
        ("stop-all, supervisor CPU", "s", ("stop_all", "daemon_cpu_s"), 1, {}),
        ("status, CPU per call (client + daemon)", "ms", _status_cpu, 1e3, {}),
    ]
    for label, unit, path, scale, targets in specs:
        for n in sorted(runs, key=int):
            vals = {}
            for t in TOOLS:
                v = path(runs[n].get(t)) if callable(path) else _get(runs[n], t, *path)
                vals[t] = None if v is None else v * scale
            tgt = targets.get(n)
            out.append((f"{label} (N={n})", unit, vals, tgt))
    rotate_mib = (results.get("log_rotate_bytes") or 0) >> 20
    for key, label in (("log", "plain file"),
                       ("log_rotated", f"rotated every {rotate_mib} MiB")):
        log = results.get(key, {})
        if log:
            vals = {t: _get(log, t, "mb_s") for t in TOOLS}
            out.append((f"log throughput, {label} (raw = `cat > file`)", "MB/s", vals,
                        ("≥ 90% of cat", lambda s, r: s >= 0.9 * r)))
    for n, sc in sorted(results.get("scale", {}).items(), key=lambda kv: int(kv[0])):
        out.append((f"spawn (N={n}, scale)", "s",
                    {"sup": _get(sc, "sup", "spawn", "seconds"), "supervisord": None,
                     "raw": _get(sc, "raw", "spawn", "seconds")}, None))
        out.append((f"idle PSS (N={n}, scale)", "MiB",
                    {"sup": (_get(sc, "sup", "idle", "pss_kib") or 0) / 1024, "supervisord": None,
                     "raw": (_get(sc, "raw", "idle", "pss_kib") or 0) / 1024}, None))
        out.append((f"idle wakeups (N={n}, scale)", "/s",
                    {"sup": _get(sc, "sup", "idle", "wakeups_per_s"), "supervisord": None,
                     "raw": _get(sc, "raw", "idle", "wakeups_per_s")}, None))
        out.append((f"status p50 (N={n}, scale)", "ms",
                    {"sup": (_get(sc, "sup", "status", "p50_s") or 0) * 1e3, "supervisord": None,
                     "raw": None},
                    ("≤ 15 ms", lambda s, r: s <= 15) if n == "5000" else None))
        base = _get(results["scale"].get("100", {}), "sup", "restart", "daemon_cpu_per_restart_s")
        cpu = _get(sc, "sup", "restart", "daemon_cpu_per_restart_s")
        if cpu is not None:
            target = None
            if base and n != "100":
                target = (f"≤ 1.5× sup at N=100 ({base * 1e3:.2f} ms)",
                          lambda s, r, b=base * 1e3: s <= 1.5 * b)
            out.append((f"restart storm, supervisor CPU each (N={n}, scale)", "ms",
                        {"sup": cpu * 1e3, "supervisord": None,
                         "raw": (_get(sc, "raw", "restart", "daemon_cpu_per_restart_s") or 0) * 1e3},
                        target))
        out.append((f"stop-all (N={n}, scale)", "s",
                    {"sup": _get(sc, "sup", "stop_all", "seconds"), "supervisord": None,
                     "raw": _get(sc, "raw", "stop_all", "seconds")}, None))
    return out


def _fmt(v):
    if v is None:
        return "–"
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def table(results):
    lines = [
        "| scenario | unit | sup | supervisord | raw | sup/raw | supervisord/raw | target | sup |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for label, unit, v, tgt in rows(results):
        verdict, ttext = "", ""
        if tgt and v["sup"] is not None:
            ttext = tgt[0]
            r = v["raw"] if v["raw"] is not None else 0
            verdict = "met" if tgt[1](v["sup"], r) else "**missed**"
        lines.append(
            f"| {label} | {unit} | {_fmt(v['sup'])} | {_fmt(v['supervisord'])} | {_fmt(v['raw'])} "
            f"| {_ratio(v['sup'], v['raw'])} | {_ratio(v['supervisord'], v['raw'])} | {ttext} | {verdict} |"
        )
    lines += ["", *per_instance(results)]
    return "\n".join(lines) + "\n"


def per_instance(results):
    """How sup's cost grows with N: spawn time and PSS per instance."""
    pts = []
    for n, r in results["runs"].items():
        if _get(r, "sup", "spawn"):
            pts.append((int(n), r["sup"]["spawn"]["seconds"], r["sup"]["idle"]["pss_kib"]))
    for n, sc in results.get("scale", {}).items():
        pts.append((int(n), sc["sup"]["spawn"]["seconds"], sc["sup"]["idle"]["pss_kib"]))
    pts.sort()
    if not pts:
        return []
    out = ["sup's cost per instance as N grows:", "",
           "| N | spawn | per instance | idle PSS | PSS per instance over the smallest N |",
           "|---:|---:|---:|---:|---:|"]
    n0, _, p0 = pts[0]
    for n, s, p in pts:
        marg = "–" if n == n0 else f"{(p - p0) / (n - n0):.2f} KiB"
        out.append(f"| {n} | {s:.3f} s | {s / n * 1e3:.2f} ms | {p / 1024:.2f} MiB | {marg} |")
    return out


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    ns = sorted(runs, key=int)
    panels = [
        ("spawn: start → all N running", "seconds", ("spawn", "seconds"), 1, True),
        ("restart latency p50", "ms", ("restart", "p50_s"), 1e3, True),
        ("stop-all", "seconds", ("stop_all", "seconds"), 1, True),
        ("status (one call, p50)", "ms", ("status", "p50_s"), 1e3, True),
        ("idle: wakeups per second", "/s", ("idle", "wakeups_per_s"), 1, False),
        ("idle: PSS of the supervisor", "MiB", ("idle", "pss_kib"), 1 / 1024, False),
    ]
    colors = {"sup": "#1f77b4", "supervisord": "#d62728", "raw": "#7f7f7f"}
    fig, axes = plt.subplots(2, 4, figsize=(17, 8))
    axes = axes.flatten()
    width = 0.26
    for ax, (title, unit, p, scale, logy) in zip(axes, panels):
        for i, t in enumerate(TOOLS):
            xs, ys = [], []
            for j, n in enumerate(ns):
                v = _get(runs[n], t, *p)
                if v is not None:
                    xs.append(j + (i - 1) * width)
                    ys.append(v * scale)
            bars = ax.bar(xs, ys, width, label=t, color=colors[t])
            ax.bar_label(bars, labels=[_fmt(y) for y in ys], fontsize=7, padding=1)
        ax.set_xticks(range(len(ns)), [f"N={n}" for n in ns])
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit + (" (log scale)" if logy else ""))
        if logy:
            ax.set_yscale("log")
        ax.margins(y=0.2)
    ax = axes[len(panels)]
    for j, key in enumerate(("log", "log_rotated")):
        log = results.get(key, {})
        xs = [j + (i - 1) * width for i in range(len(TOOLS))]
        ys = [_get(log, t, "mb_s") or 0 for t in TOOLS]
        bars = ax.bar(xs, ys, width, color=[colors[t] for t in TOOLS])
        ax.bar_label(bars, labels=[_fmt(y) for y in ys], fontsize=7)
    ax.set_xticks([0, 1], ["plain file", "rotated"])
    ax.set_title("log throughput, 256 MB of lines (raw: cat > file)", fontsize=10)
    ax.set_ylabel("MB/s")
    ax = axes[len(panels) + 1]
    pts = []
    for n, r in runs.items():
        if _get(r, "sup", "spawn"):
            pts.append((int(n), r["sup"]["spawn"]["seconds"], r["sup"]["idle"]["pss_kib"] / 1024,
                        _get(r, "raw", "spawn", "seconds")))
    for n, sc in results.get("scale", {}).items():
        pts.append((int(n), sc["sup"]["spawn"]["seconds"], sc["sup"]["idle"]["pss_kib"] / 1024,
                    _get(sc, "raw", "spawn", "seconds")))
    pts.sort()
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colors["sup"],
                label="sup spawn (s)")
        ax.plot([p[0] for p in pts if p[3]], [p[3] for p in pts if p[3]], "o--",
                color=colors["raw"], label="raw spawn (s)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N")
        ax.set_ylabel("seconds")
        ax2 = ax.twinx()
        ax2.plot([p[0] for p in pts], [p[2] for p in pts], "s:", color="#2ca02c",
                 label="sup idle PSS (MiB)")
        ax2.set_ylabel("MiB")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    ax.set_title("sup as N grows", fontsize=10)
    axes[0].legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(f"sup vs supervisord {m['supervisord']} vs raw fork/exec — {m['nproc']} cores, "
                 f"{m['cpu']}, Linux {m['kernel']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def docs(results, tbl, path):
    m = results["machine"]
    text = f"""# Benchmarks

sup, supervisord and a raw fork/exec/waitpid loop, measured side by side in one run of
`make bench` (the numbers below are from {results['started']}; the whole run took
{results['elapsed_s'] / 60:.1f} min). Ratios to the raw reference are what we claim: they survive
a noisy machine, absolute times do not.

## Machine

- {m['nproc']} cores, {m['cpu']}
- Linux {m['kernel']}, {m['memory_gib']} GiB of memory
- supervisord {m['supervisord']} (from PyPI, in a virtualenv), Python {m['python']}
- load average (1, 5, 15 min) at the start {', '.join(m.get('loadavg_at_start', []))}, at the end
  {', '.join(results.get('loadavg_at_end', []))}: anything above {m['nproc']} means other work
  competed for the cores, and wall times (spawn, restart, status) stretch with it; the CPU rows
  do not.

## Results

{tbl}
![sup vs supervisord vs raw](../bench/results/bench.png)

Raw samples: `bench/results/results.json`; this table: `bench/results/results.md`.

## What is measured

Every child is `sh -c 'echo $$ >> ANNOUNCE; exec sleep 100000'`, where ANNOUNCE is a FIFO the
driver holds open and watches with `select(2)`, so a child is counted the moment it runs its
first command. sup runs with `starttime: 0` and `stdout/stderr: discard`; supervisord with
`startsecs=0`, `stdout_logfile=NONE`, `nodaemon=true`; each tool has its own directory, socket
and config. Run as root on a host with cgroups, sup puts every instance in a cgroup of its
own (on a hybrid host: the v2 hierarchy plus each v1 controller it uses), so its spawn,
restart, stop and status rows include making, joining, reading and removing those; raw and
supervisord do none of it. **raw** (`bench/raw/raw.c`) forks and execs N children, replaces
any that dies (`waitpid`, then `fork`/`exec`), and on SIGTERM signals all of them and reaps them: the least a
supervisor can do, on this machine.

- **spawn**: from launching the daemon to the N-th child announcing itself.
- **idle**: {results['idle_window_s']} s with N running, 2 s after the start: the supervisor
  process's CPU seconds (`utime+stime` in `/proc/PID/stat`), wakeups (voluntary + involuntary
  context switches from `/proc/PID/status`, per second), RSS and PSS (`/proc/PID/smaps_rollup`).
  For supervisord, the supervisord process.
- **restart**: `kill -9` one child → its replacement announces itself; {results['restart_samples']}
  samples, each on a different instance (sup backs off a second crash of the same instance within
  10 s, by design).
- **stop-all**: `sup stop all` / `supervisorctl stop all` / SIGTERM to raw, until every child is gone.
- **status**: wall time of one `sup status` / `supervisorctl status` listing all N (process start
  included), p50 of 20 calls.
- **log throughput**: one child runs `yes LINE | head -c 256M` (100-byte lines) with stdout into a
  plain log file; MB/s from the producer's start (it announces itself first) to the last byte in the
  file, the median of
  {results['log_reps']} runs per tool. The reference is the same
  producer piped into `cat > file`. The rotated variant is the same run with the supervisor
  rotating the file every {(results.get('log_rotate_bytes') or 0) >> 20} MiB (sup's
  `stdout_maxbytes`, supervisord's `stdout_logfile_maxbytes`, every backup kept so that the bytes
  of all files can be counted), against the same `cat > file`; the two variants and the tools are
  interleaved run by run.
- **scale**: sup alone (raw beside it) at N = 100, 5000 and 10000: spawn, idle PSS and wakeups over a 10 s window, status, stop-all, and the restart storm (the supervisor's CPU per kill -9 and replacement, 300 kills; N=100 is the reference), whose cost must not grow with N. The storm starts once the daemon has been idle for 1 s after the status calls, whose background usage reads (64 instances a turn) would otherwise be counted as restarts' cost.

## Reproduce

```sh
make bench               # builds sup (release) and bench/raw, installs supervisord + matplotlib
                         # into bench/.venv, runs everything (about {results['elapsed_s'] / 60:.0f} min on 2 cores),
                         # rewrites this page and bench/results/
make bench BENCH_ARGS=--quick   # N=100 only, short windows: a smoke test of the driver
```

It needs Linux, gcc, python3 with venv, and PyPI. The driver (`bench/bench.py`) raises its
`ulimit -n` to the hard limit, puts every process it starts in a tagged environment, and kills
whatever still carries the tag when it ends, on failure too.
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
