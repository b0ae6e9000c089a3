#!/usr/bin/env bash
# Sets up what Flotilla needs and launches it (the headless engine, `flotilla serve`, with its
# embedded MQTT broker; the desktop app comes later).
#   scripts/run.sh [--demo] [flotilla serve options…]
#     --demo   also start a simulated fleet of 100 devices on loopback (50 HTTP pull, 50 MQTT),
#              with a demo firmware 2.0.0 imported, so a rollout can be tried at once:
#                target/release/flotilla rollout create --firmware 2.0.0 --target all --start
#                target/release/flotilla rollout status 1 --watch
#   e.g. scripts/run.sh --data-dir /tmp/site --no-mdns
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_rust
ensure_packages pkg-config build-essential ca-certificates python3
cd "$ROOT"

demo=0
if [ "${1:-}" = "--demo" ]; then demo=1; shift; fi

if [ "$demo" = 0 ]; then
  say "building flotilla (release)"
  cargo build --release --locked -p flotilla-cli --bin flotilla
  exec "$ROOT/target/release/flotilla" serve "$@"
fi

say "building flotilla, flotilla-sim and flotilla-imagegen (release)"
cargo build --release --locked -p flotilla-cli -p flotilla-sim -p flotilla-imagegen --bins
BIN="$ROOT/target/release"
data="${FLOTILLA_DATA_DIR:-$HOME/.local/share/flotilla-demo}"
mkdir -p "$data"
rm -f "$data/runtime.json"
"$BIN/flotilla" serve --data-dir "$data" "$@" &
serve_pid=$!
sim_pid=""
trap 'kill $sim_pid $serve_pid 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 200); do [ -f "$data/runtime.json" ] && break; sleep 0.05; done
[ -f "$data/runtime.json" ] || { echo "flotilla serve did not start" >&2; exit 1; }
read -r device_url mqtt_port < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["device_url"], (r.get("mqtt_url") or ":0").rsplit(":",1)[1])' "$data/runtime.json")
password="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["password"])' "$data/mqtt-credentials")"
fw="$data/demo-2.0.0.bin"
"$BIN/flotilla-imagegen" --chip esp32 --version 2.0.0 --project demo --size 600000 --out "$fw" >/dev/null
"$BIN/flotilla" firmware import "$fw" --notes "demo firmware" --data-dir "$data" >/dev/null
say "demo: firmware demo 2.0.0 imported; starting 100 simulated devices on 1.0.0 (5 % fail to boot)"
"$BIN/flotilla-sim" --api "$device_url" --mqtt "mqtt://flotilla:$password@127.0.0.1:$mqtt_port" \
  --fleet native-pull=50,native-mqtt=50 --chip esp32 --model demo --version 1.0.0 \
  --fail boot=5% --poll-interval 2s --reboot-delay 1s &
sim_pid=$!
say "try: FLOTILLA_DATA_DIR=$data $BIN/flotilla rollout create --firmware 2.0.0 --target all --start"
wait "$serve_pid"
