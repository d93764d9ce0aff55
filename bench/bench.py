#!/usr/bin/env python3
"""sup vs supervisord vs a raw fork/exec loop, measured side by side in one run.

Run through `make bench`, which builds sup (release) and bench/raw/raw, and installs supervisord
and matplotlib into bench/.venv. Every child is the same tiny program:

    sh -c 'echo $$ >> ANNOUNCE; exec sleep 100000'

ANNOUNCE is a FIFO the driver holds open, so the moment a child starts is seen with select(2)
rather than by polling a file. One function per scenario; every wait has a deadline; every
process the bench starts carries SUPBENCH_TAG in its environment, and a sweep over /proc kills
whatever still carries it, on success and on failure alike.
"""

import argparse
import json
import os
import platform
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOOLS = ("sup", "supervisord", "raw")
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_BYTES = 256 * 1024 * 1024
LOG_REPS = 5  # log throughput: the median of this many runs per tool
LINE = "x" * 99  # 100 bytes per line with the newline


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Small helpers: waiting with deadlines, /proc readings, percentiles.


def wait_until(what, pred, timeout, interval=0.002):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def ctx_switches(pid):
    vol = invol = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                vol = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                invol = int(line.split()[1])
    return vol, invol


def memory_kib(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("Rss", "Pss"):
                out[key.lower()] = int(line.split()[1])
    return out


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def settle(pid, quiet=1.0, timeout=30):
    """Wait until `pid` has used no CPU for `quiet` seconds (at most `timeout`)."""
    end = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < end:
        time.sleep(quiet)
        now = cpu_seconds(pid)
        if now == last:
            return
        last = now


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def run_cmd(argv, timeout, env=None, check=True):
    """Run a client command; returns (seconds, stdout)."""
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    dt = time.monotonic() - t0
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()[:300]}")
    return dt, r.stdout


# ---------------------------------------------------------------------------------------------
# The announce FIFO and the sweep.


class Announce:
    """A FIFO children append their pid to; opened read-write so it never reports EOF."""

    def __init__(self, path):
        self.path = path
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.buf = b""

    def read(self, count, timeout):
        """Block until `count` more pids arrived; returns [(monotonic time, pid)]."""
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < count:
            while b"\n" in self.buf and len(got) < count:
                line, self.buf = self.buf.split(b"\n", 1)
                got.append((time.monotonic(), int(line)))
            if len(got) >= count:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"timed out: {len(got)} of {count} children announced")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    self.buf += os.read(self.fd, 1 << 16)
                except BlockingIOError:
                    pass
        return got

    def close(self):
        os.close(self.fd)


def tagged_pids(tag):
    needle = f"SUPBENCH_TAG={tag}".encode()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if needle in f.read():
                    pids.append(int(d))
        except OSError:
            pass
    return pids


def sweep(tag, timeout=20):
    """SIGKILL every process carrying this run's tag until none is left; returns how many."""
    killed = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in tagged_pids(tag) if alive(p)]
        if not pids:
            return len(killed)
        if time.monotonic() > deadline:
            raise BenchError(f"sweep: {len(pids)} tagged processes survive SIGKILL: {pids[:10]}")
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
                killed.add(p)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# The three tools. Each gets its own directory, socket and config.


class Tool:
    name = ""

    def __init__(self, bench, n, label):
        self.bench = bench
        self.n = n
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-{label}-", dir=bench.root))
        self.announce = Announce(self.dir / "announce")
        self.child = f"echo $$ >> {self.announce.path}; exec sleep 100000"
        self.proc = None
        self.pids = []  # live child pids, in announce order

    def env(self):
        return dict(os.environ, SUPBENCH_TAG=self.bench.tag)

    def launch(self, argv):
        err = open(self.dir / "daemon.stderr", "wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=self.env(),
            start_new_session=True, cwd=self.dir,
        )
        err.close()

    @property
    def pid(self):
        return self.proc.pid

    def check_daemon(self):
        if self.proc.poll() is not None:
            tail = (self.dir / "daemon.stderr").read_text(errors="replace")[-600:]
            raise BenchError(f"{self.name} exited {self.proc.returncode}: {tail}")

    def finish(self, timeout=30):
        """End the daemon (politely, then not) and close the announce FIFO."""
        if self.proc and self.proc.poll() is None:
            try:
                self.shutdown()
                self.proc.wait(timeout=timeout)
            except (BenchError, subprocess.TimeoutExpired, OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.announce.close()

    def shutdown(self):
        self.proc.send_signal(signal.SIGTERM)


class Sup(Tool):
    name = "sup"

    def write_config(self, programs):
        lines = [f"daemon:\n  logdir: {self.dir}/logs\ninclude: []\nprograms:\n"]
        for name, p in programs.items():
            lines.append(f"  {name}:\n")
            for k, v in p.items():
                lines.append(f"    {k}: {json.dumps(v)}\n")
        (self.dir / "sup.yaml").write_text("".join(lines))

    def start(self, programs=None):
        self.sock = self.dir / "sup.sock"
        self.write_config(programs or {"c": {
            "cmd": ["sh", "-c", self.child], "numprocs": self.n, "starttime": 0,
            "stdout": "discard", "stderr": "discard",
        }})
        self.launch([str(self.bench.sup), "daemon", "-c", str(self.dir / "sup.yaml"),
                     "--socket", str(self.sock), "--quiet"])

    def ctl(self, *args, timeout=60):
        return run_cmd([str(self.bench.sup), "--socket", str(self.sock), *args], timeout)

    def status(self):
        return self.ctl("status")

    def stop_all(self):
        return self.ctl("stop", "all", timeout=120)

    def shutdown(self):
        self.ctl("shutdown", timeout=60)


class Supervisord(Tool):
    name = "supervisord"

    def start(self, programs=None):
        self.conf = self.dir / "supervisord.conf"
        d = self.dir
        text = f"""[unix_http_server]
file={d}/supervisor.sock

[supervisord]
nodaemon=true
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}
minfds={max(1024, 4 * self.n + 64)}
minprocs={max(200, 2 * self.n + 64)}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{d}/supervisor.sock
"""
        for name, p in (programs or {"c": {"command": f"sh -c '{self.child}'", "numprocs": self.n,
                                            "stdout_logfile": "NONE",
                                            "stderr_logfile": "NONE"}}).items():
            text += f"\n[program:{name}]\nprocess_name=%(program_name)s_%(process_num)d\n"
            text += "startsecs=0\nautorestart=true\nstopwaitsecs=10\n"
            for k, v in p.items():
                text += f"{k}={v}\n"
        self.conf.write_text(text)
        self.launch([str(self.bench.venv / "bin" / "supervisord"), "-c", str(self.conf)])

    def ctl(self, *args, timeout=120, check=True):
        return run_cmd([str(self.bench.venv / "bin" / "supervisorctl"), "-c", str(self.conf), *args],
                       timeout, check=check)

    def status(self):
        return self.ctl("status")

    def stop_all(self):
        return self.ctl("stop", "all")


class Raw(Tool):
    name = "raw"

    def start(self, programs=None):
        null = subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [str(self.bench.raw), str(self.n), "sh", "-c", self.child],
            stdin=null, stdout=null, stderr=null, env=self.env(), start_new_session=True,
        )

    def stop_all(self):
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        return time.monotonic() - t0, ""

    def shutdown(self):
        self.proc.send_signal(signal.SIGTERM)


# ---------------------------------------------------------------------------------------------
# Scenarios. Each returns a dict of results (raw samples included).


def scenario_spawn(tool):
    """Daemon start → all N children announced."""
    t0 = time.monotonic()
    tool.start()
    got = tool.announce.read(tool.n, timeout=60 + tool.n * 0.05)
    tool.check_daemon()
    tool.pids = [pid for _, pid in got]
    return {"seconds": got[-1][0] - t0, "daemon_cpu_s": cpu_seconds(tool.pid)}


def scenario_idle(tool, seconds):
    """N running, nothing happening: the supervisor's CPU, wakeups and memory."""
    time.sleep(2)  # let the start settle (logs flushed, pipes quiet)
    tool.check_daemon()
    pid = tool.pid
    c0, (v0, i0) = cpu_seconds(pid), ctx_switches(pid)
    time.sleep(seconds)
    tool.check_daemon()
    c1, (v1, i1) = cpu_seconds(pid), ctx_switches(pid)
    mem = memory_kib(pid)
    return {
        "window_s": seconds, "cpu_s": round(c1 - c0, 3),
        "voluntary": v1 - v0, "nonvoluntary": i1 - i0,
        "wakeups_per_s": round((v1 - v0 + i1 - i0) / seconds, 3),
        "rss_kib": mem["rss"], "pss_kib": mem["pss"],
    }


def scenario_status(tool, calls=20):
    """One `status` listing N instances; p50 over `calls` calls."""
    samples = []
    d0, r0 = cpu_seconds(tool.pid), children_cpu()
    for _ in range(calls):
        dt, out = tool.status()
        lines = [l for l in out.splitlines() if l.strip()]
        if len(lines) != tool.n:
            raise BenchError(f"{tool.name} status listed {len(lines)} of {tool.n}")
        samples.append(dt)
    return {"p50_s": pct(samples, 50), "samples_s": samples,
            "daemon_cpu_per_call_s": (cpu_seconds(tool.pid) - d0) / calls,
            "client_cpu_per_call_s": (children_cpu() - r0) / calls}


def scenario_restart(tool, samples=50):
    """kill -9 one child → its replacement announces itself. A different instance each time, so
    that sup's crash backoff (a second crash within 10 s waits) never applies."""
    lat = []
    c0 = cpu_seconds(tool.pid)
    for i in range(samples):
        victim = tool.pids[i % len(tool.pids)]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        (t1, new), = tool.announce.read(1, timeout=30)
        lat.append(t1 - t0)
        tool.pids[tool.pids.index(victim)] = new
        time.sleep(0.05)
    tool.check_daemon()
    return {"p50_s": pct(lat, 50), "p99_s": pct(lat, 99), "samples_s": lat,
            "daemon_cpu_per_restart_s": (cpu_seconds(tool.pid) - c0) / samples}


def scenario_stop_all(tool):
    """`stop all` (raw: SIGTERM to every child, waitpid all) → every child gone."""
    t0, c0 = time.monotonic(), cpu_seconds(tool.pid)
    tool.stop_all()
    c1 = cpu_seconds(tool.pid) if alive(tool.pid) else None
    t1 = wait_until("every child to be gone", lambda: not any(alive(p) for p in tool.pids), 60)
    return {"seconds": t1 - t0, "daemon_cpu_s": None if c1 is None else c1 - c0}


LOG_ROTATE = 32 << 20  # the rotation variant: sup rotates at this size...
LOG_BACKUPS = 9  # ...keeping every generation, so the bytes of all of them can be counted


def log_files(out):
    """A log's numbered backups, oldest first, then the log itself: the ones that exist. Read
    in this order while rotations go on, a file can only move to a name already read, so the
    sizes summed may miss one but never count one twice."""
    backups = [p for p in out.parent.glob(out.name + ".*") if p.suffix[1:].isdigit()]
    backups.sort(key=lambda p: -int(p.suffix[1:]))
    return [p for p in [*backups, out] if p.exists()]


def scenario_log(bench, cls, rotate=False):
    """One child writes LOG_BYTES of 100-byte lines to stdout; MB/s into the log file.

    With `rotate`, sup rotates the file every LOG_ROTATE bytes (supervisord likewise); the
    reference is the same `cat > file` either way, and the bytes counted are those of every
    generation."""
    tool = cls(bench, 1, "logrot" if rotate else "log")
    out = tool.dir / "out.log"
    producer = f"echo $$ >> {tool.announce.path}; yes {LINE} | head -c {LOG_BYTES}"
    maxbytes, backups = (LOG_ROTATE, LOG_BACKUPS) if rotate else (0, 0)
    try:
        if cls is Sup:
            tool.start({"log": {"cmd": ["sh", "-c", producer], "starttime": 0,
                                "autorestart": "never", "stdout": str(out), "stderr": "discard",
                                # Without `rotate` one plain file, as for supervisord below.
                                "stdout_maxbytes": maxbytes, "stdout_backups": backups}})
        elif cls is Supervisord:
            tool.start({"log": {"command": f"sh -c '{producer}'", "autorestart": "false",
                                "stdout_logfile": out, "stdout_logfile_maxbytes": maxbytes,
                                "stdout_logfile_backups": backups, "stderr_logfile": "NONE"}})
        else:  # the reference: the same producer piped through `cat > file`
            tool.proc = subprocess.Popen(["sh", "-c", f"{producer} | cat > {out}"],
                                         env=tool.env(), start_new_session=True)

        def size():
            total = 0
            for p in log_files(out):
                try:
                    total += p.stat().st_size
                except FileNotFoundError:  # renamed by a rotation between glob and stat
                    return 0
            return total
        (t0, _), = tool.announce.read(1, timeout=30)  # the producer has started
        cpu0 = cpu_seconds(tool.pid) if cls is not Raw else 0
        t1 = wait_until(f"{LOG_BYTES} bytes in the log", lambda: size() >= LOG_BYTES, 300,
                        interval=0.001)
        mb_s = LOG_BYTES / (t1 - t0) / 1e6
        res = {"mb_s": round(mb_s, 1), "seconds": t1 - t0, "bytes": size(),
               "files": len(log_files(out))}
        if cls is not Raw:  # the supervisor's CPU while the bytes moved
            res["daemon_cpu_s"] = round(cpu_seconds(tool.pid) - cpu0, 3)
        return res
    finally:
        tool.finish()
        for p in log_files(out):
            p.unlink(missing_ok=True)


def log_runs(bench, classes, reps):
    """Both log variants, interleaved (plain, rotated, each tool in turn), so a busy moment
    hurts every tool and variant alike; the median of `reps` runs of each."""
    samples = {rot: {c.name: [] for c in classes} for rot in (False, True)}
    for rep in range(reps):
        for rot in (False, True):
            for cls in classes:
                r = scenario_log(bench, cls, rotate=rot)
                samples[rot][cls.name].append(r)
                bench.note(f"log{' rotated' if rot else ''} {cls.name} #{rep}: {r['mb_s']} MB/s")
                bench.sweep()
    return tuple({name: {"mb_s": statistics.median(r["mb_s"] for r in runs), "samples": runs}
                  for name, runs in samples[rot].items()} for rot in (False, True))


def measure_tool(bench, cls, n, idle_s, restarts):
    tool = cls(bench, n, f"n{n}")
    res = {}
    try:
        res["spawn"] = scenario_spawn(tool)
        bench.note(f"  {cls.name} N={n} spawn {res['spawn']['seconds']:.3f}s")
        res["idle"] = scenario_idle(tool, idle_s)
        bench.note(f"  {cls.name} N={n} idle {res['idle']}")
        if cls is not Raw:
            res["status"] = scenario_status(tool)
            bench.note(f"  {cls.name} N={n} status p50 {res['status']['p50_s'] * 1e3:.1f}ms")
        res["restart"] = scenario_restart(tool, restarts)
        bench.note(f"  {cls.name} N={n} restart p50 {res['restart']['p50_s'] * 1e3:.2f}ms "
                   f"p99 {res['restart']['p99_s'] * 1e3:.2f}ms")
        res["stop_all"] = scenario_stop_all(tool)
        bench.note(f"  {cls.name} N={n} stop-all {res['stop_all']['seconds']:.3f}s")
    finally:
        tool.finish()
        bench.sweep()
    return res


def scenario_scale(bench, n, idle_s, restarts):
    """sup alone at large N (raw beside it for the spawn and restart references)."""
    res = {}
    for cls in (Sup, Raw):
        tool = cls(bench, n, f"scale{n}")
        try:
            r = {"spawn": scenario_spawn(tool), "idle": scenario_idle(tool, idle_s)}
            if cls is Sup:
                r["status"] = scenario_status(tool, 5)
                # The status calls leave the daemon reading the rest of the instances' usage
                # in the background (64 a turn): let that end, so the storm's CPU is restarts'.
                settle(tool.pid)
            # The storm: the supervisor's CPU per restart, which must not grow with N.
            r["restart"] = scenario_restart(tool, restarts)
            r["stop_all"] = scenario_stop_all(tool)
            res[cls.name] = r
            bench.note(f"  {cls.name} N={n} {r}" if cls is Raw else
                       f"  sup N={n} spawn {r['spawn']['seconds']:.2f}s pss "
                       f"{r['idle']['pss_kib']}KiB wakeups/s {r['idle']['wakeups_per_s']}")
        finally:
            tool.finish()
            bench.sweep()
    return res


# ---------------------------------------------------------------------------------------------
# The run, and what it writes.


class Bench:
    def __init__(self, args):
        self.args = args
        self.sup = Path(args.sup).resolve()
        self.raw = Path(args.raw).resolve()
        self.venv = Path(args.venv).resolve()
        self.root = Path(tempfile.mkdtemp(prefix="supbench-"))
        self.tag = self.root.name
        self.t_start = time.monotonic()

    def note(self, msg):
        print(f"[{time.monotonic() - self.t_start:6.1f}s] {msg}", flush=True)

    def sweep(self):
        n = sweep(self.tag)
        if n:
            self.note(f"  sweep killed {n} leftover processes")


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    sv = subprocess.run([sys.executable, "-c", "import supervisor.options as o; print(o.VERSION)"],
                        capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "loadavg_at_start": open("/proc/loadavg").read().split()[:3], "cpu": cpu, "kernel": platform.release(),
            "memory_gib": round(mem / 1024 / 1024, 1), "python": platform.python_version(),
            "supervisord": sv}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sup", default=REPO / "target/release/sup")
    ap.add_argument("--raw", default=HERE / "raw/raw")
    ap.add_argument("--venv", default=HERE / ".venv")
    ap.add_argument("--out", default=HERE / "results")
    ap.add_argument("--docs", default=REPO / "docs/benchmarks.md")
    ap.add_argument("--quick", action="store_true", help="N=100 only, short idle: a smoke test")
    ap.add_argument("--tools", default=",".join(TOOLS))
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bench = Bench(args)
    classes = [c for c in (Sup, Supervisord, Raw) if c.name in args.tools.split(",")]
    sizes = [100] if args.quick else [100, 1000]
    idle_s = 3 if args.quick else 20
    restarts = 10 if args.quick else 50
    # N=100 again beside the large N: the storm's reference, measured the same way.
    scale_ns = [100, 300] if args.quick else [100, 5000, 10000]
    results = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "quick": args.quick, "idle_window_s": idle_s, "restart_samples": restarts,
               "log_bytes": LOG_BYTES, "log_reps": LOG_REPS, "log_rotate_bytes": LOG_ROTATE,
               "runs": {}, "log": {}, "log_rotated": {}}
    bench.note(f"machine: {results['machine']}; work dir {bench.root}")
    ok = False
    try:
        for n in sizes:
            for cls in classes:
                bench.note(f"{cls.name} N={n}")
                results["runs"].setdefault(str(n), {})[cls.name] = measure_tool(
                    bench, cls, n, idle_s, restarts)
        results["log"], results["log_rotated"] = log_runs(bench, classes, LOG_REPS)
        if Sup in classes:
            results["scale"] = {}
            for scale_n in scale_ns:
                bench.note(f"scale N={scale_n}")
                results["scale"][str(scale_n)] = scenario_scale(
                    bench, scale_n, min(idle_s, 10), restarts * 6)
        ok = True
    finally:
        bench.sweep()
        left = tagged_pids(bench.tag)
        if left:
            print(f"bench: {len(left)} processes left behind: {left[:10]}", file=sys.stderr)
        if ok or not left:
            shutil.rmtree(bench.root, ignore_errors=True)
    results["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    results["elapsed_s"] = round(time.monotonic() - bench.t_start, 1)

    import report  # matplotlib lives in the venv; imported late so a failure above is clear

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (out / f"results{suffix}.json").write_text(json.dumps(results, indent=1) + "\n")
    table = report.table(results)
    (out / f"results{suffix}.md").write_text(table)
    report.plot(results, out / f"bench{suffix}.png")
    if not args.quick:
        report.docs(results, table, Path(args.docs))
    print(table)
    bench.note(f"done in {results['elapsed_s']}s; wrote {out}")


if __name__ == "__main__":
    main()
