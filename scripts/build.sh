#!/usr/bin/env bash
# Configures and builds cpn into ${CPN_BUILD_DIR:-build} (Ninja, RelWithDebInfo).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${CPN_BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${CPN_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$(nproc)"
