#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo fuzz, libFuzzer, on the nightly toolchain) for SECONDS
# each, from seeds generated here (test images from flotilla-imagegen, MQTT packets, device JSON,
# Range headers), and prints a table: executions, speed, coverage, corpus, result.
#   scripts/fuzz.sh            # 20 s per target (what the test command runs)
#   scripts/fuzz.sh 3600       # an hour per target
#   scripts/fuzz.sh 60 image   # some targets only
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 7200   # 10 M executions per target (or 2 h, whichever first)
# Built with optimisations *and* debug assertions (`-O -a`: overflow checks on, as in the tests).
# Without a nightly toolchain it installs one (rustup, minimal profile); when that fails it fuzzes
# nothing and exits 3, which the test command treats as a failure unless FLOTILLA_SKIP_FUZZ=1
# (then it is named under SKIPPED, never "all tests passed"). A crash, leak or timeout fails the
# run (exit 1) and leaves the input in fuzz/artifacts/<target>/.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
SECONDS_EACH="${1:-20}"
shift || true
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(image mqtt_packet mqtt_topics native_json range)

has_nightly() { command -v rustup >/dev/null && rustup toolchain list | grep -q '^nightly'; }
if ! has_nightly && command -v rustup >/dev/null; then
  say "installing the nightly toolchain for cargo fuzz (rustup, minimal profile)"
  rustup toolchain install nightly --profile minimal || true
fi
if ! has_nightly; then
  echo "fuzzing NOT run: no nightly toolchain, and rustup could not install one" >&2
  exit 3
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

# ---- seeds ------------------------------------------------------------------------------------
corpus="$ROOT/fuzz/corpus"
mkdir -p "$corpus"/{image,mqtt_packet,mqtt_topics,native_json,range}
if [ ! -f "$corpus/image/esp32.bin" ]; then
  say "generating seeds"
  cargo build -q -p flotilla-imagegen
  gen="${CARGO_TARGET_DIR:-$ROOT/target}/debug/flotilla-imagegen"
  "$gen" --out "$corpus/image/esp32.bin" --size 4096 --segments 2 >/dev/null
  "$gen" --out "$corpus/image/esp32c3.bin" --chip esp32c3 --size 4096 --segments 3 --no-hash >/dev/null
  "$gen" --out "$corpus/image/esp32.bin.gz" --size 4096 --gzip >/dev/null
  "$gen" --out "$corpus/image/esp8266-v1.bin" --esp8266 v1 --size 4096 --tasmota-version 14.2.0 >/dev/null
  "$gen" --out "$corpus/image/esp8266-v2.bin" --esp8266 v2 --size 8192 >/dev/null
  "$gen" --out "$corpus/image/esp8266-arduino.bin" --esp8266 arduino --size 8192 >/dev/null
  "$gen" --out "$corpus/image/bad-checksum.bin" --size 4096 --corrupt bad-checksum >/dev/null
  # MQTT: CONNECT with login and will, SUBSCRIBE, PUBLISH QoS 0/1/2, PUBREL, PINGREQ, DISCONNECT.
  # The first byte of each seed is the target's own (it picks the size limit).
  printf '\x01\x10\x2b\x00\x04MQTT\x04\xee\x00\x3c\x00\x03dev\x00\x0awill/topic\x00\x04gone\x00\x04user\x00\x02pw' >"$corpus/mqtt_packet/connect"
  printf '\x00\x82\x0a\x00\x01\x00\x05a/+/#\x01' >"$corpus/mqtt_packet/subscribe"
  printf '\x00\x30\x07\x00\x03a/bhi\x32\x09\x00\x03a/b\x00\x07hi\x34\x09\x00\x03a/b\x00\x08hi\x62\x02\x00\x08\xc0\x00\xe0\x00' >"$corpus/mqtt_packet/publishes"
  printf 'a/+/c\n#\n+/+\nflotilla/+/status\n$SYS/#\n\na/b/c\nflotilla/dev-1/status\n$SYS/x\n/\na//c\n' >"$corpus/mqtt_topics/basic"
  printf '{"device_id":"dev-1","mac":"24:6F:28:AA:BB:01","model":"demo","chip":"esp32","version":"1.0.0","labels":["a"],"secure_version":1,"interval_secs":60}' >"$corpus/native_json/check"
  printf '{"device_id":"dev-1","job":"12-1","state":"downloading","progress":40,"version":"1.0.0"}' >"$corpus/native_json/report"
  printf '{"online":true,"mac":"24:6F:28:AA:BB:01","version":"1.0.0","model":"demo"}' >"$corpus/native_json/presence"
  printf '\x00\x10\x00\x00\x00\x00\x00\x00bytes=0-99' >"$corpus/range/first"
  printf '\x00\x10\x00\x00\x00\x00\x00\x00bytes=-500' >"$corpus/range/suffix"
  printf '\x00\x10\x00\x00\x00\x00\x00\x00bytes=4000-' >"$corpus/range/open"
fi

# ---- runs -------------------------------------------------------------------------------------
say "fuzzing ${#TARGETS[@]} targets, ${SECONDS_EACH} s each (cargo +nightly fuzz)"
failed=0
rows=()
for t in "${TARGETS[@]}"; do
  log="$(mktemp)"
  runs=()
  [ -z "${FUZZ_RUNS:-}" ] || runs=(-runs="$FUZZ_RUNS")
  started=$SECONDS
  if (cd fuzz && cargo +nightly fuzz run -O -a "$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" "${runs[@]}" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed=1
    tail -40 "$log" >&2
  fi
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo ?)"
  speed="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo ?)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo ?)"
  units="$(ls "fuzz/corpus/$t" | wc -l)"
  took=$((SECONDS - started))
  rows+=("$(printf '| %-12s | %12s | %7s s | %9s/s | %6s | %6s | %-6s |' "$t" "$execs" "$took" "$speed" "$cov" "$units" "$result")")
  rm -f "$log"
done
printf '\n| %-12s | %12s | %9s | %11s | %6s | %6s | %-6s |\n' target executions time speed edges corpus result
printf '|%s|%s|%s|%s|%s|%s|%s|\n' -------------- -------------- ----------- ------------- -------- -------- --------
printf '%s\n' "${rows[@]}"
exit "$failed"
