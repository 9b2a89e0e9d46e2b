#!/usr/bin/env bash
# Runs the main example on a fresh Debian 12 machine: installs the missing Debian packages (the
# Fashion-MNIST data included), builds the examples with -O3 -march=native, pretrains the
# convolutional network on the six source classes on the first run (pretrained.safetensors is
# kept in the build folder), then fine-tunes it on the four target classes.
# Usage: bash examples/run.sh [finetune_fashion_mnist flags, e.g. --k 50]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/tests/deps.sh"
sft_install_deps
build="${SFT_EXAMPLES_BUILD_DIR:-$root/build/examples}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSFT_BUILD_TESTS=OFF -DSFT_BUILD_EXAMPLES=ON \
      -DSFT_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j"${SFT_JOBS:-2}" --target pretrain_fashion_mnist finetune_fashion_mnist
cd "$build"
if [ ! -f pretrained.safetensors ]; then
  echo "== pretraining on the source classes (first run only): $build/pretrained.safetensors" >&2
  ./examples/pretrain_fashion_mnist --out pretrained.safetensors
fi
echo "== fine-tuning on the target classes" >&2
./examples/finetune_fashion_mnist --pretrained pretrained.safetensors --out finetuned.safetensors "$@"
