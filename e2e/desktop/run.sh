#!/usr/bin/env bash
# Desktop end-to-end test: the real flotilla-desktop binary (debug build) under Xvfb, driven
# through tauri-driver + WebKitWebDriver by driver.mjs with plain W3C WebDriver calls.
#   e2e/desktop/run.sh                   the test
#   e2e/desktop/run.sh --cold-starts 5   only measure 5 cold starts and print their median
# Checks: the window opens (cold start printed), the demo fleet's devices appear, the overview's
# tiles, the firmware row, a rollout started from the UI completes with the live view counting
# what the engine counts, its rollout.completed event, the settings' data dir and site key, the
# tiles after the rollout (each against the admin API); screenshots of each main view go to
# $CARGO_TARGET_DIR/e2e-screenshots/desktop-*.png (default target/). Prints `N passed, M failed`
# and exits non-zero on failure.
# Environment: CARGO_TARGET_DIR (where the app is built), FLOTILLA_DESKTOP_BIN (use this binary,
# build nothing), E2E_DEMO_FAILURES (percent of demo devices failing to boot, default 0; a gate that
# pauses is resumed from the UI, and the first pause is screenshotted), E2E_ROLLOUT_TIMEOUT_MS,
# E2E_KEEP=1 (keep the data dir and logs).
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
ensure_rust
ensure_desktop_deps
ensure_tauri_driver
ensure_ui
# The app must render under the locale of a fresh Debian install or a container, where WebKitGTK
# reports the language "c" (an Intl call rejecting it once left the window blank): run it so.
export LANG=C.UTF-8 LC_ALL=C.UTF-8
unset LANGUAGE
cd "$ROOT"

target="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$target" in /*) ;; *) target="$ROOT/$target" ;; esac
app="${FLOTILLA_DESKTOP_BIN:-}"
if [ -z "$app" ]; then
  say "building flotilla-desktop (debug)"
  cargo build --locked -p flotilla-desktop --bin flotilla-desktop
  app="$target/debug/flotilla-desktop"
fi
[ -x "$app" ] || { echo "no app binary at $app" >&2; exit 1; }
driver="$(command -v tauri-driver || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver")"

work="$(mktemp -d /tmp/flotilla-e2e-desktop.XXXXXX)"
pids=()
cleanup() {
  local code=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$code" -ne 0 ] || [ -n "${E2E_KEEP:-}" ]; then
    echo "logs kept in $work (xvfb.log, tauri-driver.log: the app's stderr)" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A display nobody uses: no X socket and no lock file.
display=""
for n in $(seq 90 160); do
  if [ ! -e "/tmp/.X11-unix/X$n" ] && [ ! -e "/tmp/.X$n-lock" ]; then display=":$n"; break; fi
done
[ -n "$display" ] || { echo "no free X display number" >&2; exit 1; }
Xvfb "$display" -screen 0 1440x900x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -e "/tmp/.X11-unix/X${display#:}" ] && break; sleep 0.05; done
[ -e "/tmp/.X11-unix/X${display#:}" ] || { echo "Xvfb did not start on $display" >&2; cat "$work/xvfb.log" >&2; exit 1; }

port="$(free_port)"
native_port="$(free_port)"
DISPLAY="$display" "$driver" --port "$port" --native-port "$native_port" \
  --native-driver "$(command -v WebKitWebDriver)" >"$work/tauri-driver.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2)' "$port" 2>/dev/null && break
  sleep 0.05
done

say "desktop e2e: $app on $display, tauri-driver on :$port"
mkdir -p "$work/data"
node "$ROOT/e2e/desktop/driver.mjs" --app "$app" --port "$port" --data-dir "$work/data" \
  --screenshots "$target/e2e-screenshots" "$@"
