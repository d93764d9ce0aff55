#!/bin/sh
# Soak: one `sup daemon` with 300 instances under churn for SOAK_SECONDS (default 300): 250
# jobs that exit after 10-13 s and are restarted at once (a run under 10 s would count as a
# crash loop and back off), about 20 restarts a second, 50 that print a line a second, a reload
# every 30 s alternating two configs (a scale of the churners and a changed env on the
# printers, so both kinds of plan are carried out), and three `sup tail -f` clients. Every
# 10 s the daemon's VmRSS, open fds and CPU ticks (utime+stime) go to a CSV; at the end the
# least-squares slopes are printed for the whole run and for each half, so growth that levels
# off shows as a smaller second-half slope.
# Usage: [SOAK_SECONDS=600] [SOAK_CSV=path] bench/soak.sh [SUP_BINARY]
set -eu
SUP=$(realpath "${1:-target/release/sup}")
SECONDS_TOTAL=${SOAK_SECONDS:-300}
W=$(mktemp -d /tmp/sup-soak.XXXXXX)
CSV=${SOAK_CSV:-$W/soak.csv}
P=
TAILS=
cleanup() {
  [ -n "$TAILS" ] && kill $TAILS 2>/dev/null || true
  if [ -n "$P" ] && kill -0 "$P" 2>/dev/null; then
    "$SUP" shutdown --socket "$W/s.sock" >/dev/null 2>&1 || kill "$P" 2>/dev/null || true
    wait "$P" 2>/dev/null || true
  fi
  case "$CSV" in "$W"/*) ;; *) rm -rf "$W" ;; esac
}
trap cleanup EXIT
trap 'exit 130' INT TERM

config() { # churners, PHASE
  cat <<YAML
daemon:
  loglevel: info
programs:
  churn:
    cmd: ["sh", "-c", "echo up; sleep \$((10 + \$\$ % 4)); echo down >&2"]
    numprocs: $1
    autorestart: always
    starttime: 1s
    stoptime: 1s
  printer:
    cmd: ["sh", "-c", "while :; do echo \"tick \$PHASE \$\$\"; sleep 1; done"]
    numprocs: $((300 - $1))
    env: {PHASE: "$2"}
    stoptime: 1s
YAML
}
config 250 a > "$W/a.yaml"
config 240 b > "$W/b.yaml"
cp "$W/a.yaml" "$W/sup.yaml"

"$SUP" daemon -c "$W/sup.yaml" --socket "$W/s.sock" --pidfile "$W/s.pid" --quiet &
P=$!
until [ -S "$W/s.sock" ]; do sleep 0.1; kill -0 "$P"; done
for i in 0 1 2; do
  "$SUP" tail -f -n 0 --socket "$W/s.sock" "printer:$i" >/dev/null 2>&1 &
  TAILS="$TAILS $!"
done

echo "t_s,rss_kib,fds,cpu_ticks" > "$CSV"
sample() {
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$P/status")
  fds=$(ls "/proc/$P/fd" | wc -l)
  # utime and stime, fields 14 and 15 counted after the ")" that ends the command name.
  ticks=$(sed 's/.*) //' "/proc/$P/stat" | awk '{print $12 + $13}')
  echo "$1,$rss,$fds,$ticks" >> "$CSV"
}
start=$(date +%s)
elapsed=0
reloads=0
sample 0
while [ "$elapsed" -lt "$SECONDS_TOTAL" ]; do
  sleep 10
  elapsed=$(( $(date +%s) - start ))
  kill -0 "$P"
  if [ $(( elapsed / 30 )) -gt "$reloads" ]; then
    reloads=$(( reloads + 1 ))
    if [ $(( reloads % 2 )) -eq 1 ]; then cp "$W/b.yaml" "$W/sup.yaml"; else cp "$W/a.yaml" "$W/sup.yaml"; fi
    "$SUP" reload --socket "$W/s.sock" >/dev/null
  fi
  sample "$elapsed"
done
spawned=$(grep -c " spawned" "$W/logs/sup.log" || true)

python3 - "$CSV" "$SECONDS_TOTAL" "$reloads" "$spawned" <<'PY'
import csv, sys
rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(sys.argv[1]))]
def slope(rs, key):
    n = len(rs)
    if n < 2:
        return float("nan")
    mt = sum(r["t_s"] for r in rs) / n
    mv = sum(r[key] for r in rs) / n
    num = sum((r["t_s"] - mt) * (r[key] - mv) for r in rs)
    den = sum((r["t_s"] - mt) ** 2 for r in rs)
    return num / den * 60
half = len(rows) // 2
first, last = rows[0], rows[-1]
print(f"soak: {sys.argv[2]} s, 300 instances, {sys.argv[3]} reloads, {sys.argv[4]} spawns, "
      f"{len(rows)} samples in {sys.argv[1]}")
print(f"rss: {first['rss_kib']:.0f} -> {last['rss_kib']:.0f} KiB (max {max(r['rss_kib'] for r in rows):.0f})"
      f"; fds: {first['fds']:.0f} -> {last['fds']:.0f}"
      f"; cpu: {(last['cpu_ticks'] - first['cpu_ticks']) / max(last['t_s'], 1):.1f} ticks/s")
for name, rs in (("whole run", rows), ("first half", rows[: half + 1]), ("second half", rows[half:])):
    print(f"slope, {name}: rss {slope(rs, 'rss_kib'):+.1f} KiB/min, fds {slope(rs, 'fds'):+.2f}/min")
PY
