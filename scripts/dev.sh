#!/usr/bin/env bash
# The one run command: installs what is missing, builds, then runs `cpn dev`
# with the arguments given (for example --demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
exec "${CPN_BUILD_DIR:-build}/cpn" dev "$@"
