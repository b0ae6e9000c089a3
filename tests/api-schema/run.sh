#!/usr/bin/env bash
# The admin API and the device API against their own OpenAPI descriptions, with schemathesis
# (PyPI). The admin API: a real
# `flotilla serve` on a fresh data dir holding one imported firmware, the admin token, every
# operation but the endless event stream and the backup (which writes folders wherever it is
# told; tests/e2e/data_safety.rs covers it), for a bounded time. Fails on any 5xx, any response that
# does not match its schema, and any operation that answers without the token. The device API
# (`GET /api/v1/openapi.json` on the device server): every route devices call, unauthenticated
# as a stranger on the LAN would call them, for the same time; fails on any 5xx and any response
# that does not match its schema.
#   tests/api-schema/run.sh [SECONDS]      # default 90, per API
# Operations that act on something that must exist (a rollout, a device's job, a credential, a
# firmware file, a download token) get known-good requests too (known_good.py, schemathesis' hooks
# module), and answered.py fails the run if any operation never answered a success: otherwise only
# its refusals would have been checked against the schema.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$ROOT"
MAX_TIME="${1:-90}"
PY="$(ensure_py_venv)"
VENV="$(dirname "$PY")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$ROOT/$CARGO_TARGET_DIR" ;; esac
if [ -z "${E2E_NO_BUILD:-}" ]; then
  ensure_rust
  cargo build -q -p flotilla-cli -p flotilla-imagegen --bins
fi
BIN="$CARGO_TARGET_DIR/debug"

# The runs themselves happen in a network namespace of their own (`unshare -n`: loopback only),
# so nothing the fuzzer makes the engine do — probing an address, resolving a made-up host name,
# scanning a subnet — leaves this machine. Needs root; FLOTILLA_SKIP_NETNS=1 runs without it.
if [ -z "${API_SCHEMA_IN_NETNS:-}" ]; then
  if [ "${FLOTILLA_SKIP_NETNS:-}" = 1 ]; then
    printf '\033[1;33mFLOTILLA_SKIP_NETNS=1: schemathesis runs without a network namespace of its own (the fuzzed probe may reach the resolver)\033[0m\n' >&2
  else
    ensure_packages iproute2 util-linux
    exec env API_SCHEMA_IN_NETNS=1 E2E_NO_BUILD=1 unshare -n -- bash "${BASH_SOURCE[0]}" "$@"
  fi
else
  ip link set dev lo up
fi

work="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  # API_SCHEMA_KEEP=DIR keeps the HAR reports (every request and answer) and the engine's log.
  [ -n "${API_SCHEMA_KEEP:-}" ] && mkdir -p "$API_SCHEMA_KEEP" && cp "$work"/*.har "$work/engine.log" "$API_SCHEMA_KEEP"/ 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$BIN/flotilla" serve --data-dir "$work/data" --http 127.0.0.1:0 --https 127.0.0.1:0 --admin 127.0.0.1:0 \
  --mqtt-listen 127.0.0.1:0 --mqtt-tls-listen 127.0.0.1:0 --no-mdns --log warn >"$work/engine.log" 2>&1 &
pid=$!
wait_for_runtime "$work/data" "$work/engine.log"
admin="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_url"])' "$work/data/runtime.json")"
token="$(cat "$work/data/admin-token")"

# Known-good requests (known_good.py, the hooks module): for the operations that act on something
# that must exist, the first and then every third positive case of each phase becomes one that must
# succeed, so their success answers are checked against the schema too; answered.py then checks
# every operation answered a 2xx.
export FLOTILLA_ADMIN="$admin" FLOTILLA_TOKEN="$token" FLOTILLA_FW="$work/fw.bin"
export FLOTILLA_DEVICE="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_url"])' "$work/data/runtime.json")"
export PYTHONDONTWRITEBYTECODE=1 SCHEMATHESIS_HOOKS=known_good PYTHONPATH="$ROOT/tests/api-schema${PYTHONPATH:+:$PYTHONPATH}"

# Something to find: firmware 2.0.0 — the `example` of /firmware/{ref}, which schemathesis tries
# first, so those routes' success answers are checked against their schema too (its own random
# refs find nothing and check the 404s).
"$BIN/flotilla-imagegen" --out "$work/fw.bin" --version 2.0.0 --project st-fixture >/dev/null
FLOTILLA_DATA_DIR="$work/data" "$BIN/flotilla" firmware import "$work/fw.bin" >/dev/null

say "schemathesis: the admin API against its OpenAPI description (${MAX_TIME} s)"
status=0
"$VENV/schemathesis" run "$admin/api/v1/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance,ignored_auth \
  --exclude-path /api/v1/events/stream \
  --exclude-path /api/v1/backup \
  --max-time "$MAX_TIME" --workers 1 --no-color --report har --report-har-path "$work/admin.har" || status=$?
"$PY" "$ROOT/tests/api-schema/answered.py" "$work/admin.har" "$admin/api/v1/openapi.json" --token "$token" \
  --exclude /api/v1/events/stream --exclude /api/v1/backup --exclude /api/v1/openapi.json || status=1
# The example reached a real firmware: a change or the deletion of 2.0.0 was answered and logged.
if ! "$PY" - "$admin" "$token" <<'PY'
import json, sys, urllib.request
admin, token = sys.argv[1:]
req = urllib.request.Request(f"{admin}/api/v1/events?kind=firmware.&limit=1000", headers={"Authorization": f"Bearer {token}"})
events = json.load(urllib.request.urlopen(req, timeout=10))["events"]
kinds = {e["kind"] for e in events}
sys.exit(0 if kinds & {"firmware.changed", "firmware.deleted"} else 1)
PY
then
  echo "schemathesis never changed or deleted firmware 2.0.0: /firmware/{ref}'s example was not used" >&2
  status=1
fi
device="$FLOTILLA_DEVICE"
"$PY" "$ROOT/tests/api-schema/known_good.py" defaults
say "schemathesis: the device API against its OpenAPI description (${MAX_TIME} s)"
"$VENV/schemathesis" run "$device/api/v1/openapi.json" \
  --checks not_a_server_error,response_schema_conformance \
  --max-time "$MAX_TIME" --workers 1 --no-color --report har --report-har-path "$work/device.har" || status=$?
"$PY" "$ROOT/tests/api-schema/answered.py" "$work/device.har" "$device/api/v1/openapi.json" --exclude /api/v1/openapi.json || status=1
if grep -E "panicked|ERROR" "$work/engine.log" >/dev/null; then
  echo "the engine logged errors during the run:" >&2
  grep -E "panicked|ERROR" "$work/engine.log" | head -20 >&2
  status=1
fi
exit "$status"
