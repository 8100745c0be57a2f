#!/usr/bin/env bash
# The man pages against the programs (suite unit): every page renders with
# `groff -man -ww -z` without a warning; every flag a program's -h prints
# appears in its page; every program answers --version with "NAME VERSION".
#
# Usage: man_pages.sh VERSION PAGE [PROGRAM PAGE]...
#   (a PAGE alone first: one without a program, e.g. distcache.7)
# DC_SHIM_SOURCE=shim.cc: also every DC_CACHE_* variable it reads with
# getenv() must be in that first page.
# Exit 0 pass, 1 fail, 77 skip (groff missing; a failure under CI=true).
set -uo pipefail
version=${1:?usage: man_pages.sh VERSION PAGE [PROGRAM PAGE]...}
shift
fail=0
bad() { echo "FAIL: $*"; fail=1; }

if ! command -v groff >/dev/null; then
  [ "${CI:-}" = true ] && { echo "FAIL: groff is not installed (package groff-base)"; exit 1; }
  echo "SKIP: groff is not installed (package groff-base)"
  exit 77
fi
export LC_ALL=C

# check_page PAGE: renders without warnings; sets TEXT to the page as text
# (no line breaks inside a flag: long lines, no hyphenation in the pages).
check_page() {
  local page=$1 warnings
  warnings=$(groff -man -ww -z "$page" 2>&1)
  [ -z "$warnings" ] || bad "$(basename "$page"): groff warnings:"$'\n'"$warnings"
  TEXT=$(groff -man -Tascii -rLL=250n -P-cbou "$page" 2>/dev/null)
  [ -n "$TEXT" ] || bad "$(basename "$page"): renders to nothing"
}

# flags_of PROGRAM: the flags its -h prints, one per line: words that start
# with - or -- and a letter (or "-?"), standing at the start of a word.
flags_of() {
  "$1" -h 2>&1 | grep -oE '(^|[][ ,|(])--?([A-Za-z][A-Za-z0-9-]*|\?)' | sed -E 's/^[][ ,|(]//' | sort -u
}

check_page "$1"
if [ -n "${DC_SHIM_SOURCE:-}" ]; then
  vars=$(grep -oE 'getenv\("DC_[A-Z0-9_]+"\)' "$DC_SHIM_SOURCE" | sed -E 's/getenv\("(.*)"\)/\1/' | sort -u)
  [ -n "$vars" ] || bad "no getenv(\"DC_...\") found in $DC_SHIM_SOURCE"
  for v in $vars; do
    grep -qE "(^|[^A-Z0-9_])$v([^A-Z0-9_]|\$)" <<<"$TEXT" || bad "$(basename "$1"): the shim's $v is not documented"
  done
  [ "$fail" -eq 0 ] && echo "ok: $(basename "$1") documents the shim's" $vars
fi
shift
while [ $# -ge 2 ]; do
  prog=$1 page=$2 name=$(basename "$1")
  shift 2
  [ -x "$prog" ] || { bad "$name: $prog is not built"; continue; }
  check_page "$page"
  # -h: exit 0, and every flag it names is in the page.
  "$prog" -h >/dev/null 2>&1 || bad "$name -h: exit status $?"
  n=0
  while read -r flag; do
    [ -n "$flag" ] || continue
    n=$((n + 1))
    re=$(printf '%s' "$flag" | sed 's/[?]/[?]/g')
    grep -qE -- "(^|[^A-Za-z0-9-])$re([^A-Za-z0-9-]|\$)" <<<"$TEXT" ||
      bad "$name: the flag $flag of its -h is not in $(basename "$page")"
  done < <(flags_of "$prog")
  [ "$n" -ge 3 ] || bad "$name -h: only $n flags found in its output"
  # The page's name is the program's.
  grep -qE "^NAME" <<<"$TEXT" && grep -qE "^ +$name - " <<<"$TEXT" ||
    bad "$(basename "$page"): its NAME section does not name $name"
  # --version and -version: "NAME VERSION", exit 0.
  for v in --version -version; do
    out=$("$prog" "$v" 2>&1)
    st=$?
    [ "$st" -eq 0 ] && [ "$out" = "$name $version" ] ||
      bad "$name $v: printed '$out' (exit $st), expected '$name $version' (exit 0)"
  done
  [ "$fail" -eq 0 ] && echo "ok: $name: $n flags of -h in $(basename "$page"), --version"
done
exit $fail
