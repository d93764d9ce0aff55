#!/usr/bin/env python3
"""The daemon's CPU per /metrics scrape as the number of instances grows.

For each N: a daemon serving HTTP on 127.0.0.1 (port 0, read from the event log) with N
instances of `sleep`; once all N are running, read the daemon's utime+stime, scrape /metrics
`--scrapes` times one after another, read it again. Prints ms of daemon CPU (user and system)
and wall time per scrape, and the size of the answer.

    bench/metrics_scrape.py [--sup target/release/sup] [--sizes 100,1000] [--scrapes 100]
"""
import argparse, os, re, socket, subprocess, sys, tempfile, time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def wait(what, cond, timeout=180):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")


def get(port, path):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                return b"".join(chunks)
            chunks.append(b)


def run(sup, n, scrapes):
    with tempfile.TemporaryDirectory(prefix="sup-metrics-") as d:
        with open(f"{d}/sup.yaml", "w") as f:
            f.write(
                'daemon:\n  http:\n    listen: "127.0.0.1:0"\nprograms:\n  many:\n'
                f"    cmd: sleep 100000\n    numprocs: {n}\n    starttime: 0.2\n"
                "    stdout: discard\n    stderr: discard\n"
            )
        daemon = subprocess.Popen(
            [sup, "daemon", "-q", "-c", f"{d}/sup.yaml", "--socket", f"{d}/sup.sock"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            def port():
                try:
                    with open(f"{d}/logs/sup.log") as f:
                        m = re.search(r"serving HTTP on 127\.0\.0\.1:(\d+)", f.read())
                    return m and int(m.group(1))
                except FileNotFoundError:
                    return None

            p = wait("the HTTP port", port)
            running = re.compile(rb'sup_program_running_instances\{program="many"\} (\d+)')

            def all_up():
                m = running.search(get(p, "/metrics"))
                return m and int(m.group(1)) == n

            wait(f"{n} running", all_up)
            time.sleep(1)
            (u0, s0), t0 = cpu(daemon.pid), time.monotonic()
            for _ in range(scrapes):
                body = get(p, "/metrics")
            (u1, s1), t1 = cpu(daemon.pid), time.monotonic()
            per = lambda x: x * 1000 / scrapes
            print(
                f"N={n}: {scrapes} scrapes of {len(body)} bytes: daemon CPU "
                f"{per(u1 - u0 + s1 - s0):.2f} ms per scrape (user {per(u1 - u0):.2f}, "
                f"system {per(s1 - s0):.2f}); wall {per(t1 - t0):.2f} ms per scrape"
            )
        finally:
            daemon.terminate()
            daemon.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sup", default="target/release/sup")
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--scrapes", type=int, default=100)
    args = ap.parse_args()
    for n in map(int, args.sizes.split(",")):
        run(os.path.abspath(args.sup), n, args.scrapes)


if __name__ == "__main__":
    main()
