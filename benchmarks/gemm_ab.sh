#!/bin/bash
# A/B of sft's GEMM: the working tree against a git revision, in one process, called alternately.
# Usage: benchmarks/gemm_ab.sh [revision (default HEAD)] [threads (default 1)] [calls per side (300)] [warm|cold]
# (warm: C stays in L2; cold: A and B also come from L3, as weights do in a training step)
# Prints, per training shape, each side's median and 10th-percentile GFLOP/s and the ratio of
# their median times (work / base; below 1: the working tree is faster). Run it several times:
# the ratio is what to compare, not the GFLOP/s of one run (see benchmarks/RESULTS.md).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:-HEAD} threads=${2:-1} calls=${3:-300} warm=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$src" archive "$rev" include | tar -x -C "$tmp"
flags=(-std=c++17 -O3 -march=native -DNDEBUG -I/usr/include/eigen3)
g++ "${flags[@]}" -I "$tmp/include" -Dsft=sft_base -DSFT_AB_SIDE=base -c "$src/benchmarks/ab/gemm_ab_impl.cpp" -o "$tmp/base.o"
g++ "${flags[@]}" -I "$src/include" -DSFT_AB_SIDE=work -c "$src/benchmarks/ab/gemm_ab_impl.cpp" -o "$tmp/work.o"
g++ -O2 "$src/benchmarks/ab/gemm_ab_main.cpp" "$tmp/base.o" "$tmp/work.o" -o "$tmp/gemm_ab" -pthread
echo "base: $(git -C "$src" rev-parse --short "$rev"), work: working tree of $src"
"$tmp/gemm_ab" "$threads" "$calls" $warm
