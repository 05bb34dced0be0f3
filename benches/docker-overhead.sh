#!/usr/bin/env bash
# Docker runner overhead per task vs a bare `docker run --rm` of the same image and command,
# measured in the same run. Each side runs 20 tasks (`true` in the local busybox test image);
# the figure is the median task time, and the ratio pipewright / docker.
#   RUNS=3 benches/docker-overhead.sh     # repeat the comparison RUNS times
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-1}"
TASKS=20
IMAGE="pipewright-test/busybox:latest"
docker image inspect "$IMAGE" >/dev/null 2>&1 || ci/docker-test-image.sh
cargo build -q --release -p pipewright-cli
BIN="${CARGO_TARGET_DIR:-target}/release/pipewright"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  echo 'job "docker" {'
  for i in $(seq 1 "$TASKS"); do
    printf '  task "t%s" {\n    run "docker" {\n      image = "%s"\n      cmd   = "true"\n    }\n  }\n' "$i" "$IMAGE"
  done
  echo '}'
} > "$work/p.hcl"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

for run in $(seq 1 "$RUNS"); do
  : > "$work/bare"
  for _ in $(seq 1 "$TASKS"); do
    s=$(date +%s%N)
    docker run --rm "$IMAGE" /bin/sh -ec true
    e=$(date +%s%N)
    echo $(( (e - s) / 1000000 )) >> "$work/bare"
  done
  "$BIN" run --pipeline "$work/p.hcl" --output json --workspace-root "$work/ws" > "$work/events.json"
  python3 - "$work/events.json" > "$work/pw" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "step_finished":
        print(e["duration_ms"])
PY
  n=$(wc -l < "$work/pw")
  [ "$n" -eq "$TASKS" ] || { echo "expected $TASKS step timings, got $n" >&2; head -5 "$work/events.json" >&2; exit 1; }
  b=$(median < "$work/bare"); p=$(median < "$work/pw")
  ratio=$(awk -v p="$p" -v b="$b" 'BEGIN { printf "%.2f", p / b }')
  echo "run $run: median per task over $TASKS: docker run --rm ${b} ms, pipewright docker runner ${p} ms, ratio ${ratio}x"
done
