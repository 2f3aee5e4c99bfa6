#!/usr/bin/env bash
# Installs the Debian 12 packages cpn needs to build, test and run. Idempotent:
# packages already present are not touched. Run as root (or with sudo).
set -euo pipefail
PACKAGES=(g++ cmake pkg-config ninja-build ccache curl
  libboost-dev nlohmann-json3-dev libsqlite3-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libglpk-dev libxxhash-dev libzstd-dev libssl-dev openssl
  libgoogle-perftools-dev
  clang libclang-rt-14-dev)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
