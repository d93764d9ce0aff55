#!/usr/bin/env python3
"""The daemon's CPU per restart as the number of instances grows.

For each N: N instances of a job that writes its pid to a file and sleeps; kill -9 a different
instance each time (so crash backoff never applies), wait for its replacement's pid file, and
read the daemon's utime+stime and the bytes it wrote (`wchar` of /proc/PID/io: the state file,
the event log, sockets). Prints ms of daemon CPU and KiB written per restart for each N.

    bench/restart_cost.py [--sup target/release/sup] [--sizes 100,1000,3000] [--kills 150]
"""
import argparse, os, random, signal, subprocess, sys, tempfile, time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def written(pid):
    with open(f"/proc/{pid}/io") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("wchar:"))


def wait(what, cond, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.005)
    sys.exit(f"timed out waiting for {what}")


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def run(sup, n, kills):
    root = tempfile.mkdtemp(prefix="sup-restart-cost-")
    pids = os.path.join(root, "pids")
    os.mkdir(pids)
    with open(os.path.join(root, "sup.yaml"), "w") as f:
        f.write(f"""daemon:
  socket: {root}/sup.sock
  logdir: {root}/logs
programs:
  w:
    cmd: ["sh", "-c", "echo $$ > {pids}/$SUP_PROCESS_NAME.tmp && mv {pids}/$SUP_PROCESS_NAME.tmp {pids}/$SUP_PROCESS_NAME; exec sleep 100000"]
    numprocs: {n}
    starttime: 0
    stdout: discard
    stderr: discard
""")
    d = subprocess.Popen([sup, "daemon", "-q", "-c", f"{root}/sup.yaml"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    names = [f"w:{i}" for i in range(n)]
    wait("every instance", lambda: all(read_pid(f"{pids}/{x}") for x in names), 300)
    time.sleep(1)
    victims = random.sample(names, min(kills, n))
    c0, w0 = cpu(d.pid), written(d.pid)
    for name in victims:
        path = f"{pids}/{name}"
        old = read_pid(path)
        os.kill(old, signal.SIGKILL)
        wait(f"{name}'s replacement", lambda: read_pid(path) not in (0, old))
    used, wrote = cpu(d.pid) - c0, written(d.pid) - w0
    d.send_signal(signal.SIGTERM)
    d.wait(60)
    subprocess.run(["rm", "-rf", root])
    return used / len(victims) * 1e3, wrote / len(victims) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sup", default="target/release/sup")
    ap.add_argument("--sizes", default="100,1000,3000")
    ap.add_argument("--kills", type=int, default=150)
    a = ap.parse_args()
    for n in map(int, a.sizes.split(",")):
        ms, kib = run(a.sup, n, a.kills)
        print(f"N={n}: {ms:.2f} ms of daemon CPU, {kib:.1f} KiB written per restart", flush=True)


if __name__ == "__main__":
    main()
