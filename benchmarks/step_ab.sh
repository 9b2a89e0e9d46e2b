#!/bin/bash
# A/B of the reference workload's training step: the working tree against a git revision, both in
# one process, in alternating blocks of steps (benchmarks/ab/step_ab_main.cpp). Resolves changes of
# a few percent of the step that an epoch A/B (mlp_ab.sh, whole runs seconds apart) cannot.
# Usage: benchmarks/step_ab.sh [revision (HEAD)] [threads (2)] [blocks per side (200)] [steps per block (12)] [batch (128)]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:-HEAD} threads=${2:-2} blocks=${3:-200} block=${4:-12} batch=${5:-128}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$src" archive "$rev" include | tar -x -C "$tmp"
flags=(-std=c++17 -O3 -march=native -DNDEBUG -I/usr/include/eigen3)
g++ "${flags[@]}" -I "$tmp/include" -Dsft=sft_base -DSFT_AB_SIDE=base -c "$src/benchmarks/ab/step_ab_impl.cpp" -o "$tmp/base.o" &
g++ "${flags[@]}" -I "$src/include" -DSFT_AB_SIDE=work -c "$src/benchmarks/ab/step_ab_impl.cpp" -o "$tmp/work.o"
wait
g++ -O2 "$src/benchmarks/ab/step_ab_main.cpp" "$tmp/base.o" "$tmp/work.o" -o "$tmp/step_ab" -pthread -lfmt -lz
echo "base: $(git -C "$src" rev-parse --short "$rev"), work: working tree of $src"
"$tmp/step_ab" "$threads" "$blocks" "$block" "$batch"
