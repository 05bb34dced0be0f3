#!/usr/bin/env bash
# Per-task overhead of `pipewright run` against ninja -j2 and make -j2, measured in one run.
#
# The same DAG of N `true` commands (default 1000) is run two ways: wide (no dependencies, two at a
# time) and as a chain (each task after the previous one). Each tool runs each shape RUNS times
# (default 5); the median wall time divided by N is the per-task cost.
#
#   benches/compare.sh            # builds pipewright in release mode first
#   N=200 RUNS=3 benches/compare.sh
set -euo pipefail

N=${N:-1000}
RUNS=${RUNS:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
for tool in ninja make; do
  command -v "$tool" >/dev/null || { echo "compare.sh needs $tool (apt-get install ninja-build make)" >&2; exit 1; }
done

cargo build -q --release -p pipewright-cli --manifest-path "$root/Cargo.toml"
pw="${CARGO_TARGET_DIR:-$root/target}/release/pipewright"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- inputs -----------------------------------------------------------------------------------
gen_pipewright() { # shape
  {
    echo 'job "bench" {'
    [ "$1" = wide ] && echo '  in_parallel {' && echo '    limit = 2'
    for i in $(seq 1 "$N"); do
      printf '  task "t%d" {\n    run "exec" {\n      path = "true"\n    }\n  }\n' "$i"
    done
    [ "$1" = wide ] && echo '  }'
    echo '}'
  } > "$work/$1.hcl"
}
gen_ninja() { # shape
  {
    echo 'rule t'
    echo '  command = true'
    for i in $(seq 1 "$N"); do
      if [ "$1" = chain ] && [ "$i" -gt 1 ]; then
        echo "build t$i: t || t$((i - 1))"
      else
        echo "build t$i: t"
      fi
    done
  } > "$work/$1.ninja"
}
gen_make() { # shape
  {
    printf 'all:'
    for i in $(seq 1 "$N"); do printf ' t%d' "$i"; done
    echo
    echo '.PHONY: all'
    for i in $(seq 1 "$N"); do
      if [ "$1" = chain ] && [ "$i" -gt 1 ]; then echo "t$i: t$((i - 1))"; else echo "t$i:"; fi
      printf '\t@true\n.PHONY: t%d\n' "$i"
    done
  } > "$work/$1.mk"
}

# --- timing -----------------------------------------------------------------------------------
now_ns() { date +%s%N; }
median_ns() { # command...
  local times=()
  for _ in $(seq 1 "$RUNS"); do
    local t0 t1
    t0=$(now_ns)
    "$@" >/dev/null 2>&1
    t1=$(now_ns)
    times+=($((t1 - t0)))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p"
}

printf '%d tasks of `true`, median of %d runs, %s, %s cores\n\n' "$N" "$RUNS" "$(uname -sr)" "$(nproc)"
printf '%-6s %-10s %12s %14s %10s\n' shape tool total_ms per_task_us vs_ninja
for shape in wide chain; do
  gen_pipewright "$shape"; gen_ninja "$shape"; gen_make "$shape"
  ninja_ns=$(median_ns ninja -j2 -f "$work/$shape.ninja" -C "$work")
  # ninja keeps a log of finished targets; phony-like outputs never exist, so every run runs all.
  make_ns=$(median_ns make -j2 -f "$work/$shape.mk" -C "$work")
  pw_ns=$(median_ns "$pw" run --pipeline "$work/$shape.hcl" --workspace-root "$work/ws" --color never)
  for row in "ninja:$ninja_ns" "make:$make_ns" "pipewright:$pw_ns"; do
    tool=${row%%:*}; ns=${row#*:}
    awk -v s="$shape" -v t="$tool" -v ns="$ns" -v n="$N" -v base="$ninja_ns" \
      'BEGIN { printf "%-6s %-10s %12.1f %14.1f %9.2fx\n", s, t, ns / 1e6, ns / n / 1e3, ns / base }'
  done
done
