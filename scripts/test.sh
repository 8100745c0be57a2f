#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds with warnings as
# errors, runs every meson suite, runs the fuzzers for a bounded time when
# clang is there, and ends with one line "N passed, N failed, N skipped".
# Exit status 0 only when nothing failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/deps.sh test || exit 1

logs=()
status=0
run_meson_tests() {  # build-dir log-name [meson test args...]
  local dir=$1 log=$root/$1/$2; shift 2
  meson test -C "$dir" --print-errorlogs "$@" 2>&1 | tee "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  logs+=("$log")
}
setup() {  # build-dir [meson setup args...]
  local dir=$1; shift
  if [ -d "$dir" ]; then meson setup --reconfigure "$dir" "$@" >/dev/null
  else meson setup "$dir" "$@"; fi
}

# 1. The normal build, warnings as errors, every suite.
setup build-test -Dwerror=true --buildtype=debugoptimized || exit 1
meson compile -C build-test || exit 1
run_meson_tests build-test suites.log --num-processes 2

# 2. Fuzzers (libFuzzer needs clang), each for a bounded time.
if command -v clang++ >/dev/null; then
  CC=clang CXX=clang++ setup build-fuzz -Dfuzz=true -Dwerror=true --buildtype=debugoptimized \
    && meson compile -C build-fuzz \
    && run_meson_tests build-fuzz fuzz.log --suite fuzz --num-processes 1 \
    || status=1
else
  echo "test.sh: clang++ not found, fuzzers skipped"
fi

echo
scripts/summary.sh "${logs[@]}"
exit $status
