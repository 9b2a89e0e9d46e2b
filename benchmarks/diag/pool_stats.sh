#!/bin/bash
# Where a 2-thread training step's time goes, job by job: builds benchmarks/mlp_epoch.cpp against a
# copy of include/ whose thread pool (detail/thread_pool.hpp) counts, per job, the wall time, the
# calling thread's task time, its wait for the other threads at the end, and the workers' task
# time, and prints them per step after each epoch (the first 8 jobs of each step by position).
# The library itself is not changed: the counters exist only in the copy.
# Usage: benchmarks/diag/pool_stats.sh [threads (2)] [epochs (1)] [batch (128)]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
threads=${1:-2} epochs=${2:-1} batch=${3:-128}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$src/include" "$tmp/include"
python3 "$src/benchmarks/diag/pool_stats_patch.py" "$tmp/include/sft/detail/thread_pool.hpp" "$src/benchmarks/mlp_epoch.cpp" "$tmp/mlp_stats.cpp"
g++ -std=c++17 -O3 -march=native -DNDEBUG -I "$tmp/include" -I "$src/benchmarks" -I/usr/include/eigen3 "$tmp/mlp_stats.cpp" -o "$tmp/mlp_stats" -pthread -lfmt -lz
"$tmp/mlp_stats" --threads "$threads" --epochs "$epochs" --batch "$batch"
