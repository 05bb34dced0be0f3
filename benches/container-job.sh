#!/usr/bin/env bash
# A 5-step job in one job container (`container` block, each step a `docker exec`) against the
# same job as 5 `run "docker"` steps, and both against the raw Docker CLI, measured in the same
# run: (c) one container started, 5 × `docker exec`, then removed; (d) 5 × `docker run --rm`.
# Each figure is the median wall time of RUNS repetitions of the whole job (for pipewright, the
# whole `pipewright run`: start, pipeline load, workspace, container start and removal).
#   RUNS=5 benches/container-job.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"
STEPS=5
IMAGE="pipewright-test/busybox:latest"
docker image inspect "$IMAGE" >/dev/null 2>&1 || ci/docker-test-image.sh
cargo build -q --release -p pipewright-cli
BIN="${CARGO_TARGET_DIR:-target}/release/pipewright"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

{
  echo 'job "container" {'
  printf '  container {\n    image = "%s"\n    pull  = "never"\n  }\n' "$IMAGE"
  for i in $(seq 1 "$STEPS"); do
    printf '  task "t%s" {\n    run "shell" { cmd = "echo %s" }\n  }\n' "$i" "$i"
  done
  echo '}'
} > "$work/container.hcl"
{
  echo 'job "docker" {'
  for i in $(seq 1 "$STEPS"); do
    printf '  task "t%s" {\n    run "docker" {\n      image = "%s"\n      pull  = "never"\n      cmd   = "echo %s"\n    }\n  }\n' "$i" "$IMAGE" "$i"
  done
  echo '}'
} > "$work/docker.hcl"

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

for f in a b c d; do : > "$work/$f"; done
for _ in $(seq 1 "$RUNS"); do
  s=$(date +%s%N)
  "$BIN" run --pipeline "$work/container.hcl" --color never --workspace-root "$work/ws" > "$work/log" 2>&1 \
    || { cat "$work/log" >&2; exit 1; }
  ms "$s" >> "$work/a"

  s=$(date +%s%N)
  "$BIN" run --pipeline "$work/docker.hcl" --color never --workspace-root "$work/ws" > "$work/log" 2>&1 \
    || { cat "$work/log" >&2; exit 1; }
  ms "$s" >> "$work/b"

  s=$(date +%s%N)
  c=$(docker run -d --init "$IMAGE" sleep infinity)
  for i in $(seq 1 "$STEPS"); do docker exec "$c" /bin/sh -ec "echo $i" >/dev/null; done
  docker rm -f "$c" >/dev/null
  ms "$s" >> "$work/c"

  s=$(date +%s%N)
  for i in $(seq 1 "$STEPS"); do docker run --rm "$IMAGE" /bin/sh -ec "echo $i" >/dev/null; done
  ms "$s" >> "$work/d"
done

a=$(median < "$work/a"); b=$(median < "$work/b"); c=$(median < "$work/c"); d=$(median < "$work/d")
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { printf "%.2f", x / y }'; }
echo "median of $RUNS, a $STEPS-step job:"
echo "  (a) pipewright, container block:        ${a} ms"
echo "  (b) pipewright, $STEPS run \"docker\" steps:   ${b} ms"
echo "  (c) docker run -d + $STEPS docker exec + rm: ${c} ms"
echo "  (d) $STEPS x docker run --rm:              ${d} ms"
echo "  (a)/(c) = $(ratio "$a" "$c")x (goal <= 1.2x), (a)/(d) = $(ratio "$a" "$d")x, (a)/(b) = $(ratio "$a" "$b")x"
left=$(docker ps -aq --filter label=io.pipewright.managed --filter "label=io.pipewright.job=container" | wc -l)
[ "$left" -eq 0 ] || { echo "$left job containers left behind" >&2; exit 1; }
