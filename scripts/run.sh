#!/usr/bin/env bash
# Sets up what Flotilla needs and launches the desktop app (Tauri; the engine runs inside it with
# its embedded MQTT broker). Installs the Debian packages it needs (WebKitGTK), the UI's npm
# packages, builds the UI and a release build of flotilla-desktop; each only when missing or stale.
#   scripts/run.sh [--demo] [options of flotilla-desktop / flotilla serve…]
#     --demo   also start a simulated fleet of 48 devices on loopback (24 HTTP pull, 24 MQTT, 5 %
#              fail to boot) with a demo firmware 2.0.0 imported, so a rollout can be tried at
#              once (data in ~/.local/share/flotilla-demo unless --data-dir/FLOTILLA_DATA_DIR).
#   e.g. scripts/run.sh --data-dir /tmp/site --no-mdns
# Without a display (no $DISPLAY or $WAYLAND_DISPLAY) it says so and runs the same engine headless
# (`flotilla serve`), printing the URL to open in a browser, token included.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_rust
ensure_packages pkg-config build-essential ca-certificates python3
cd "$ROOT"

args=("$@")
demo=0
data_dir="${FLOTILLA_DATA_DIR:-}"
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --demo) demo=1 ;;
    --data-dir) data_dir="${args[$((i + 1))]:-}" ;;
    --data-dir=*) data_dir="${args[$i]#--data-dir=}" ;;
  esac
done
if [ "$demo" = 1 ] && [ -z "$data_dir" ]; then
  # The demo's devices and rollouts stay out of the real site's data.
  data_dir="$HOME/.local/share/flotilla-demo"
  args+=(--data-dir "$data_dir")
fi
command -v node >/dev/null || { echo "node not found: install Node.js 20+ first" >&2; exit 1; }
ensure_ui
target="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$target" in /*) ;; *) target="$ROOT/$target" ;; esac

if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  ensure_desktop_deps
  say "building flotilla-desktop (release)"
  cargo build --release --locked -p flotilla-desktop --bin flotilla-desktop
  exec "$target/release/flotilla-desktop" "${args[@]}"
fi

say "no display (neither DISPLAY nor WAYLAND_DISPLAY is set): running the engine headless with \`flotilla serve\`; open its UI in a browser"
cargo build --release --locked -p flotilla-cli --bin flotilla
data_dir="${data_dir:-$HOME/.local/share/flotilla}"
"$target/release/flotilla" serve "${args[@]}" &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null' EXIT INT TERM
# runtime.json names the admin URL once this engine (this pid) is up.
url=""
for _ in $(seq 1 200); do
  url="$(python3 - "$data_dir" "$serve" <<'PY' 2>/dev/null || true
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
r = json.loads((d / "runtime.json").read_text())
if r["pid"] == int(sys.argv[2]):
    print(f'{r["admin_url"]}/#token={(d / "admin-token").read_text().strip()}')
PY
)"
  [ -n "$url" ] && break
  kill -0 "$serve" 2>/dev/null || break
  sleep 0.05
done
if [ -n "$url" ]; then
  say "open in a browser: $url"
fi
wait "$serve"
