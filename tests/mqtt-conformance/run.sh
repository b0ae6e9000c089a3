#!/usr/bin/env bash
# MQTT 3.1.1 conformance of the embedded broker beside Debian's mosquitto (conformance.py, driven by
# the paho-mqtt client from PyPI). Starts the real `flotilla serve` (embedded broker on a free
# loopback port) and a mosquitto with a password file, runs every test against both, compares
# their answers, and prints both side by side.
#   tests/mqtt-conformance/run.sh            # builds flotilla first
#   E2E_NO_BUILD=1 tests/mqtt-conformance/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$ROOT"
ensure_packages mosquitto
PY="$(ensure_py_venv)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$ROOT/$CARGO_TARGET_DIR" ;; esac
if [ -z "${E2E_NO_BUILD:-}" ]; then
  ensure_rust
  cargo build -q -p flotilla-cli --bin flotilla
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say "starting flotilla serve (embedded broker) and mosquitto on loopback"
"$CARGO_TARGET_DIR/debug/flotilla" serve --data-dir "$work/engine" --http 127.0.0.1:0 --https 127.0.0.1:0 --admin 127.0.0.1:0 \
  --mqtt-listen 127.0.0.1:0 --mqtt-tls-listen 127.0.0.1:0 --no-mdns --log warn >"$work/engine.log" 2>&1 &
pids+=($!)
wait_for_runtime "$work/engine" "$work/engine.log"
eport="$("$PY" -c 'import json,sys,urllib.parse; print(urllib.parse.urlparse(json.load(open(sys.argv[1]))["mqtt_url"]).port)' "$work/engine/runtime.json")"
euser="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["username"])' "$work/engine/mqtt-credentials")"
epass="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["password"])' "$work/engine/mqtt-credentials")"

mport="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mpass="mosquitto-$RANDOM$RANDOM"
touch "$work/passwd" && chmod 0600 "$work/passwd"
mosquitto_passwd -b "$work/passwd" conformance "$mpass"
cat >"$work/mosquitto.conf" <<CONF
listener $mport 127.0.0.1
allow_anonymous false
password_file $work/passwd
persistence false
log_dest file $work/mosquitto.log
CONF
# Run as root, mosquitto would switch to its own user, which cannot read this private directory.
[ "$(id -u)" -eq 0 ] && echo "user root" >>"$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
pids+=($!)
up=""
for _ in $(seq 1 100); do
  "$PY" -c "import socket; socket.create_connection(('127.0.0.1',$mport),1)" 2>/dev/null && { up=1; break; }
  sleep 0.05
done
[ -n "$up" ] || { echo "mosquitto did not start:" >&2; cat "$work/mosquitto.log" >&2; exit 1; }

say "MQTT conformance: flotilla (embedded broker) and mosquitto $(/usr/sbin/mosquitto -h 2>/dev/null | head -1 | awk '{print $3}')"
"$PY" "$ROOT/tests/mqtt-conformance/conformance.py" \
  --broker "flotilla=127.0.0.1:$eport:$euser:$epass" \
  --broker "mosquitto=127.0.0.1:$mport:conformance:$mpass"
