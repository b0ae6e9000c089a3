#!/usr/bin/env bash
# Browser end-to-end test and web UI performance measurements: playwright-core drives Debian's
# Chromium (headless) against a real `flotilla serve` and a simulated fleet, all on 127.0.0.1.
#   e2e/browser/run.sh                  # CI: the tests below, light (a few minutes)
#   UI_BENCH=1 e2e/browser/run.sh       # the documented numbers: release build, 2,000 live devices
#   e2e/browser/run.sh tests/1-rollout.test.mjs   # only some test files
# Tests (node --test, files in tests/):
#   1-rollout          20 simulated devices; through the UI: upload + inspect + import a firmware,
#                      the wizard's default staged rollout, live view to completed, every device
#                      on 2.0.0 (UI and API), CSV report downloaded and checked.
#   2-devices-10k      10,000 devices seeded through the API: devices view interactive < 1 s,
#                      frame times while scrolling and filtering, input → paint.
#   3-live-rollout     200 (UI_BENCH=1: 2,000) devices updating: click → paint < 100 ms, and the
#                      live view matches the engine within 1 s of completion.
#   4-one-click-rollout  6 devices: the outdated tile's review, a selection's review, "Change
#                      settings…" into the wizard, then firmware → "Roll it out…" → Start (two
#                      clicks) and the staged rollout to completed.
#   5-language-names-a11y  navigator.language "c" (WebKitGTK under LANG=C): every view renders;
#                      failures and events by name; the live search by the name shown; tiles and
#                      back button; header texts, unique row button names, skip link, focus after
#                      `g d`, cell borders in line with their row.
#   6-pause-resume     8 devices, a quarter fail to boot: the rollout pauses itself; the banner
#                      says why (as recorded), the numbers of now and what Resume does; Resume
#                      continues it; amber "completed · N not updated", the engine's summary per
#                      wave, "1.0.0 → 1.0.0" for rolled-back devices, devices/min after a reload.
#   7-vanish-skip      4 devices, one never comes back after its reboot: the waiting panel names it
#                      (state, deadline, retries, last heard from), Skip (with a confirm that says
#                      what it does) lets the rollout complete; "1.0.0 → not heard from since".
#   8-left-out-review  6 outdated devices, 2 of them offline: the outdated tile's review updates the
#                      4 online ones and lists the 2 others as left out, by name, with the reason;
#                      the wizard's preview too.
#   9-find-devices     a Shelly played over HTTP on loopback: "Add by address…" probes it and lists
#                      it with family and version; a silent address adds nothing; "Scan now".
# Screenshots: $CARGO_TARGET_DIR/e2e-screenshots/browser-*.png (default target/).
# Environment: CARGO_TARGET_DIR, UI_BENCH=1, FLOTILLA_E2E_PROFILE=debug|release (default: debug,
# release with UI_BENCH=1), E2E_NO_BUILD=1 (use the binaries and ui/dist as they are),
# KEEP_E2E_DIR=1 (keep the engines' data dirs and logs).
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
HERE="$ROOT/e2e/browser"
cd "$ROOT"

command -v node >/dev/null || { echo "node not found: install Node.js 20+ first" >&2; exit 1; }
ensure_packages chromium

if [ ! -d "$HERE/node_modules/playwright-core" ] || [ "$HERE/package-lock.json" -nt "$HERE/node_modules" ]; then
  say "installing the browser test's npm packages (npm ci)"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) && touch "$HERE/node_modules"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$ROOT/$CARGO_TARGET_DIR" ;; esac
if [ "${UI_BENCH:-}" = 1 ]; then
  export FLOTILLA_E2E_PROFILE="${FLOTILLA_E2E_PROFILE:-release}"
else
  export FLOTILLA_E2E_PROFILE="${FLOTILLA_E2E_PROFILE:-debug}"
fi
release=()
[ "$FLOTILLA_E2E_PROFILE" = release ] && release=(--release)

if [ -z "${E2E_NO_BUILD:-}" ]; then
  # The engine embeds ui/dist when it is compiled: the UI is built first.
  if declare -F ensure_ui >/dev/null; then
    ensure_ui
  else
    [ -d ui/node_modules ] || (cd ui && npm ci --no-audit --no-fund --loglevel=error)
    say "building the UI (npm run build)"
    (cd ui && npm run build --silent)
  fi
  ensure_rust
  say "building flotilla, flotilla-sim, flotilla-imagegen ($FLOTILLA_E2E_PROFILE)"
  cargo build "${release[@]}" -p flotilla-cli -p flotilla-sim -p flotilla-imagegen --bins
fi

# The simulated fleet opens a socket per MQTT device and a socket and a listener per pull device.
ensure_open_files $((2 * 2000 + 1024))

cd "$HERE"
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=(tests/*.test.mjs)
fi
say "browser tests (${FLOTILLA_E2E_PROFILE} build${UI_BENCH:+, UI_BENCH=1}): ${files[*]}"
exec node --test --test-concurrency=1 "${files[@]}"
