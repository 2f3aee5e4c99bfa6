#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang, ASan and UBSan into
# ${CPN_FUZZ_BUILD_DIR:-build-fuzz} and runs each for its share of SECONDS
# (default 60 in all), starting from the seeds in tests/fuzz/corpus/<target>/
# and the shipped files of the target's kind under data/ (copied, so runs
# never change the repo). Prints each target's executions;
# exits non-zero on any finding, leaving the crashing input under
# $BUILD/artifacts/. Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(http_api job_spec topology trace agent_config)
BUILD=${CPN_FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCPN_FUZZ=ON \
    -DCPN_BUILD_TESTS=OFF -DCPN_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]/#/fuzz_}"
EACH=$(( TOTAL / ${#TARGETS[@]} ))
[ "$EACH" -ge 1 ] || EACH=1
mkdir -p "$BUILD/artifacts"
status=0
printf '%-14s %10s %8s %s\n' target executions seconds result
for t in "${TARGETS[@]}"; do
  corpus="$BUILD/corpus/$t"
  mkdir -p "$corpus"
  cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  # The project's shipped files of the target's kind are seeds too.
  case "$t" in
    job_spec) cp -n data/jobs/demo/*.json "$corpus"/ || true ;;
    topology) cp -n data/topology/*.json data/catalog/*.json "$corpus"/ || true ;;
    agent_config) cp -n data/sites/*.toml "$corpus"/ || true ;;
  esac
  log="$BUILD/fuzz-$t.log"
  set +e
  ASAN_OPTIONS=detect_leaks=1 "$BUILD/fuzz_$t" -max_total_time="$EACH" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$BUILD/artifacts/$t-" \
    -print_final_stats=1 "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  if [ $rc -eq 0 ]; then
    printf '%-14s %10s %8s %s\n' "$t" "$runs" "$EACH" ok
  else
    printf '%-14s %10s %8s %s\n' "$t" "$runs" "$EACH" "FINDING (exit $rc), see $log"
    tail -40 "$log"
    status=1
  fi
done
exit $status
