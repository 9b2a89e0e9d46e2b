#!/bin/bash
# A/B of the reference workload's epoch (benchmarks/mlp_epoch.cpp): the working tree against a git
# revision, both built with the same flags, run alternately (base, work, base, work, ...) so that
# each pair sees the same minute of this noisy host. Prints each run's RESULT line and, per pair,
# work / base epoch time; then the median of the pairs' ratios (below 1: the working tree is faster).
# Usage: benchmarks/mlp_ab.sh [revision (HEAD)] [threads (2)] [pairs (5)] [batch (128)]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:-HEAD} threads=${2:-2} pairs=${3:-5} batch=${4:-128}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$src" archive "$rev" include | tar -x -C "$tmp"
flags=(-std=c++17 -O3 -march=native -DNDEBUG -I/usr/include/eigen3 -I "$src/benchmarks")
g++ "${flags[@]}" -I "$tmp/include" "$src/benchmarks/mlp_epoch.cpp" -o "$tmp/mlp_base" -pthread -lfmt -lz &
g++ "${flags[@]}" -I "$src/include" "$src/benchmarks/mlp_epoch.cpp" -o "$tmp/mlp_work" -pthread -lfmt -lz
wait
echo "base: $(git -C "$src" rev-parse --short "$rev"), work: working tree of $src; $threads thread(s), batch $batch, $pairs pairs"
ratios=()
for p in $(seq "$pairs"); do
  declare -A t=()
  for side in base work; do
    line=$("$tmp/mlp_$side" --threads "$threads" --batch "$batch" --seed 1 | grep '^RESULT')
    echo "$side ${line#RESULT }"
    t[$side]=$(sed -E 's/.* epoch_s=([0-9.]+).*/\1/' <<<"$line")
  done
  r=$(awk -v w="${t[work]}" -v b="${t[base]}" 'BEGIN { printf "%.3f", w / b }')
  echo "pair $p: work/base $r"
  ratios+=("$r")
  unset t
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "median work/base over %d pairs: %.3f\n", NR, m }'
