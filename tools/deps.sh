#!/usr/bin/env bash
# Makes sure the Debian packages sealstore builds with are installed.
# As root it installs what is missing; otherwise it prints the exact
# apt-get line and fails. Usage: tools/deps.sh [extra-package ...]
set -euo pipefail

# The Python binding is built for Debian's /usr/bin/python3 and these.
packages=(g++ cmake make pkg-config libboost-dev libboost-filesystem-dev libfmt-dev
          libbenchmark-dev libgtest-dev libgmock-dev
          python3-dev pybind11-dev python3-pybind11 python3-numpy python3-pytest
          python3-setuptools python3-wheel python3-pip
          libopenmpi-dev openmpi-bin "$@")
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "sealstore needs these Debian packages, which are not installed:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
