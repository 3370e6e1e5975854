#!/usr/bin/env bash
# Bounded fuzzing of what clients control: the token decoder, the Cookie parser and the
# request framing of a client connection (against httparse, Pingora's parser).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
# libFuzzer through cargo-fuzz, on the stable toolchain (RUSTC_BOOTSTRAP=1 unlocks the
# sanitizer flags it needs). Seeds are in fuzz/corpus/<target>/ (new inputs go to a temporary
# folder, so the seeds stay small); a crash is written to fuzz/artifacts/<target>/: commit it,
# and `cargo test --test properties` replays every seed and artifact.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
scripts/deps.sh
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
status=0
for target in token_decode cookie_parse request_framing; do
  work=$(mktemp -d)
  echo "== fuzzing $target for ${secs}s"
  if ! cargo fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
      -max_total_time="$secs" -max_len=4096 -print_final_stats=1 >"$work.log" 2>&1; then
    status=1
    tail -40 "$work.log"
  fi
  grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY)" "$work.log" || true
  echo "$target: $(ls "$work" | wc -l) new corpus inputs (not kept)"
  rm -rf "$work" "$work.log"
done
if ls fuzz/artifacts/*/* >/dev/null 2>&1; then
  echo "crashes found: see fuzz/artifacts" >&2
  status=1
fi
exit $status
