#!/usr/bin/env bash
# Installs sft into a prefix and builds tests/consumer against it with find_package, then builds it
# again with sft vendored through add_subdirectory (which must not build sft's own tests).
# Usage: run.sh <sft source dir> <work dir>
set -euo pipefail
src="$1"
work="$2"
rm -rf "$work"
mkdir -p "$work"
cmake -S "$src" -B "$work/sft-build" -DSFT_BUILD_TESTS=OFF -DSFT_BUILD_EXAMPLES=OFF -DSFT_BUILD_BENCHMARKS=OFF \
      -DCMAKE_INSTALL_PREFIX="$work/prefix" >/dev/null
cmake --install "$work/sft-build" >/dev/null
test -f "$work/prefix/include/sft/sft.hpp"

echo "== find_package(sft CONFIG REQUIRED) from $work/prefix"
cmake -S "$src/tests/consumer" -B "$work/find-package" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/find-package" -j2 >/dev/null
"$work/find-package/consumer"

echo "== add_subdirectory(sft)"
cmake -S "$src/tests/consumer" -B "$work/subdirectory" -DCMAKE_BUILD_TYPE=Release -DSFT_SOURCE_DIR="$src" >/dev/null
if cmake --build "$work/subdirectory" --target help | grep -q sft_test; then
  echo "add_subdirectory built sft's own tests: SFT_BUILD_TESTS must default to OFF for a subproject" >&2
  exit 1
fi
cmake --build "$work/subdirectory" -j2 >/dev/null
"$work/subdirectory/consumer"
