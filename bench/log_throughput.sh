#!/bin/sh
# Log throughput: 256 MB of 72-byte lines through `sup daemon` into a job's log file, timed
# from the job's `spawned` to its `exited` event (logged only after its pipe is drained),
# against `cat > file` on the same data.
# Usage: bench/log_throughput.sh [SUP_BINARY] [extra job keys, e.g. "timestamps: true"]
set -e
SUP=${1:-target/release/sup}; [ $# -gt 0 ] && shift
SUP=$(realpath "$SUP")
W=$(mktemp -d /tmp/sup-throughput.XXXXXX)
trap 'rm -rf "$W"' EXIT
yes "the quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnop" \
  | head -c 268435456 > "$W/data.txt"
cat > "$W/sup.yaml" <<YAML
programs:
  bench:
    cmd: ["cat", "$W/data.txt"]
    autorestart: never
    starttime: 0
$(for k in "$@"; do echo "    $k"; done)
YAML
"$SUP" daemon -c "$W/sup.yaml" --socket "$W/s.sock" --pidfile "$W/s.pid" --quiet &
P=$!
until grep -q "bench exited" "$W/logs/sup.log" 2>/dev/null; do sleep 0.05; done
"$SUP" shutdown --socket "$W/s.sock" >/dev/null
wait $P
python3 - "$W" <<'PY'
import sys, datetime, os, glob
d = sys.argv[1]
lines = open(d + "/logs/sup.log").read().splitlines()
def t(word):
    return datetime.datetime.fromisoformat(next(l for l in lines if word in l).split()[0])
secs = (t("bench exited") - t("bench spawned")).total_seconds()
files = glob.glob(d + "/logs/bench.out*")
size = sum(os.path.getsize(p) for p in files)
print(f"through sup: {size/1e6:.0f} MB in {secs:.2f} s = {size/1e6/secs:.0f} MB/s ({len(files)} files)")
PY
start=$(date +%s.%N); cat "$W/data.txt" > "$W/direct.txt"; end=$(date +%s.%N)
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'cat > file: 268 MB in {s:.2f} s = {268.4/s:.0f} MB/s')" "$start" "$end"
