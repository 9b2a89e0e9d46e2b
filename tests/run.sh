#!/usr/bin/env bash
# Builds and runs the whole test suite: unit and parity tests through CTest, then the consumer
# projects (find_package from an install prefix, and add_subdirectory).
# Usage: bash tests/run.sh   (from anywhere; installs missing Debian packages first)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/tests/deps.sh"
sft_install_deps
build="${SFT_BUILD_DIR:-$root/build/tests}"
jobs="${SFT_JOBS:-2}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSFT_BUILD_TESTS=ON -DSFT_BUILD_EXAMPLES=ON -DSFT_BUILD_BENCHMARKS=OFF
cmake --build "$build" -j"$jobs"
ctest --test-dir "$build" --output-on-failure -j"$jobs"
