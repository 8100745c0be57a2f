#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time: run_fuzzer.sh BINARY SEED_DIR SECONDS
# The seed corpus is only read; new inputs go to a scratch directory.
set -euo pipefail
bin=$1 seeds=$2 secs=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p findings
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix=findings/ "$work" "$seeds"
