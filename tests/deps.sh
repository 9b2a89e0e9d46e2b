#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing sft needs, when some are missing.
# Sourced by tests/run.sh and examples/run.sh; needs root or sudo only when it installs.
sft_install_deps() {
  local pkgs=(build-essential cmake pkg-config libeigen3-dev libxsimd-dev xtl-dev catch2 libfmt-dev
              zlib1g-dev nlohmann-json3-dev libbenchmark-dev dataset-fashion-mnist "$@")
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "sft: installing missing Debian packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
}
