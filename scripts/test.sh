#!/usr/bin/env bash
# The one test command: installs what is missing, builds, starts a
# single-machine Slurm (scripts/start-slurm.sh; needs root), runs every test —
# once in the normal build and once under AddressSanitizer and
# UndefinedBehaviorSanitizer (set CPN_TEST_SANITIZERS=0 to skip that pass),
# then a one-minute smoke run of every libFuzzer target (scripts/fuzz.sh;
# CPN_TEST_FUZZ_S sets the seconds, 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
BUILD_DIR=${CPN_BUILD_DIR:-build}
# A real single-machine Slurm for the Slurm executor's tests; stopped on exit.
bash scripts/start-slurm.sh
trap 'bash scripts/stop-slurm.sh' EXIT
(cd "$BUILD_DIR" && ctest --output-on-failure -j "$(nproc)")
if [ "${CPN_TEST_SANITIZERS:-1}" != "0" ]; then
  echo "== again under ASan + UBSan"
  CPN_BUILD_DIR="${BUILD_DIR}-asan" CPN_BUILD_TYPE=Debug bash scripts/build.sh -DCPN_SANITIZERS=ON -DCPN_BUILD_BENCH=OFF
  (cd "${BUILD_DIR}-asan" && ctest --output-on-failure -j "$(nproc)")
fi
FUZZ_S=${CPN_TEST_FUZZ_S:-60}
if [ "$FUZZ_S" != "0" ]; then
  echo "== fuzz smoke run (${FUZZ_S} s in all)"
  bash scripts/fuzz.sh "$FUZZ_S"
fi
