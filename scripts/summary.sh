#!/usr/bin/env bash
# Sums meson test summaries ("Ok: N", "Fail: N", ...) found in the given log
# files and prints one line: "N passed, N failed, N skipped".
awk '
  /^Ok:/              { ok += $2 }
  /^Expected Fail:/   { ok += $3 }
  /^Fail:/            { bad += $2 }
  /^Unexpected Pass:/ { bad += $3 }
  /^Timeout:/         { bad += $2 }
  /^Skipped:/         { skip += $2 }
  END { printf "%d passed, %d failed, %d skipped\n", ok, bad, skip }
' "$@"
