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

# 2. The same suites under AddressSanitizer + UndefinedBehaviorSanitizer
#    ('link' compiles a C program with plain cc, which cannot link sanitized code).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true --buildtype=debug \
  && meson compile -C build-asan \
  && run_meson_tests build-asan asan.log --suite unit --suite integration --suite e2e \
       --no-suite link --num-processes 2 --timeout-multiplier 3 \
  || status=1

# 3. The threaded parts under ThreadSanitizer: the OpenSSL glue driven by
#    many threads (ssl_api), the threaded example server, the client library.
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dwerror=true --buildtype=debug \
  && meson compile -C build-tsan \
  && run_meson_tests build-tsan tsan.log ssl_api e2e_example_server client_api \
       --num-processes 2 --timeout-multiplier 3 \
  || status=1

# 4. Fuzzers (libFuzzer needs clang), each for a bounded time.
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
