#!/usr/bin/env bash
# One rollout through 2,000 simulated devices: `flotilla serve` with its embedded MQTT broker,
# and `flotilla-sim` running 1,000 native-pull + 1,000 native-mqtt devices on 1.0.0. Once the
# engine lists every device, a rollout of a 256 KiB 2.0.0 image to all of them is created and
# started (waves 1,10%,50%,100%, 200 at once) and followed to the end. Targets: engine CPU time
# under 1 ms per device updated, engine resident memory under 150 MB.
#
#   bench/orchestrate.sh
#   PULL=1000 MQTT=1000 IMAGE_SIZE=262144 CONCURRENCY=200 POLL=1s LIMIT=600 bench/orchestrate.sh
#   PERF_DATA=/tmp/engine.perf bench/orchestrate.sh   # also profile the engine during the rollout
#
# Only the engine's process is measured (utime+stime from /proc/<pid>/stat; VmHWM and VmRSS from
# /proc/<pid>/status); the simulator's CPU is its own. The engine's CPU "during the rollout" runs
# from just before `rollout create` to the moment the rollout is seen completed, so it includes
# the fleet's background traffic (pull devices checking in every POLL); the idle rate of that
# traffic is measured first and shown apart. Everything listens on 127.0.0.1 and is stopped at exit.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ensure_rust
ensure_packages python3
PULL="${PULL:-1000}"
MQTT="${MQTT:-1000}"
IMAGE_SIZE="${IMAGE_SIZE:-262144}"
CONCURRENCY="${CONCURRENCY:-200}"
POLL="${POLL:-1s}"
IDLE="${IDLE:-5}"
LIMIT="${LIMIT:-600}"
DEVICES=$((PULL + MQTT))

# Each MQTT device holds a connection at both ends (the simulator and the embedded broker), and
# each pull device a socket and its own endpoint's listener.
ensure_open_files $((2 * DEVICES + 1024))

cd "$ROOT"
say "building release binaries"
cargo build --release --locked -p flotilla-cli -p flotilla-sim -p flotilla-imagegen \
  --bin flotilla --bin flotilla-sim --bin flotilla-imagegen
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"

work="$(mktemp -d)"
data="$work/data"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say "starting flotilla serve (embedded MQTT broker)"
"$BIN/flotilla" serve --data-dir "$data" --http 127.0.0.1:0 --admin 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 \
  --https 127.0.0.1:0 --mqtt-tls-listen 127.0.0.1:0 --no-mdns --log warn >"$work/flotilla.log" 2>&1 &
engine=$!
pids+=("$engine")
wait_for_runtime "$data" "$work/flotilla.log"
# The device server's URL, and the embedded broker's with the engine's credentials.
urls="$(python3 - "$data" <<'PY'
import json, sys, urllib.parse
runtime = json.load(open(f"{sys.argv[1]}/runtime.json"))
creds = json.load(open(f"{sys.argv[1]}/mqtt-credentials"))
port = urllib.parse.urlparse(runtime["mqtt_url"]).port
user, password = (urllib.parse.quote(creds[k], safe="") for k in ("username", "password"))
print(runtime["device_url"], f"mqtt://{user}:{password}@127.0.0.1:{port}")
PY
)"
read -r device_url mqtt_url <<<"$urls"

say "importing a ${IMAGE_SIZE}-byte image, demo 2.0.0"
"$BIN/flotilla-imagegen" --chip esp32 --version 2.0.0 --project demo --size "$IMAGE_SIZE" --out "$work/fw.bin" >/dev/null
"$BIN/flotilla" firmware import "$work/fw.bin" --data-dir "$data" --json >/dev/null

say "starting flotilla-sim: $PULL native-pull + $MQTT native-mqtt devices on 1.0.0"
RUST_LOG=warn "$BIN/flotilla-sim" --api "$device_url" --mqtt "$mqtt_url" \
  --fleet "native-pull=$PULL,native-mqtt=$MQTT" --chip esp32 --model demo --version 1.0.0 \
  --poll-interval "$POLL" --reboot-delay 500ms --seed 7 >"$work/sim.log" 2>&1 &
sim=$!
pids+=("$sim")

[ -z "${PERF_DATA:-}" ] || ensure_packages linux-perf
python3 - "$BIN/flotilla" "$data" "$engine" "$sim" "$DEVICES" "$CONCURRENCY" "$IDLE" "$LIMIT" "$work/sim.log" "${PERF_DATA:-}" <<'PY'
import json, os, signal, subprocess, sys, time

flotilla, data, engine, sim, devices, concurrency, idle, limit, sim_log, perf_data = sys.argv[1:]
engine, sim, devices, idle, limit = int(engine), int(sim), int(devices), float(idle), float(limit)
TICK = os.sysconf("SC_CLK_TCK")

def cli(*args):
    out = subprocess.run([flotilla, *args, "--data-dir", data, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)

def cpu_s(pid):  # utime + stime, every thread, in seconds
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK

def mem_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0

def threads(pid):  # {thread name: [cpu seconds, context switches]} over every thread of pid
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                switches = sum(int(l.split()[1]) for l in f if "ctxt_switches" in l)
        except OSError:
            continue
        name = head.split("(", 1)[1]
        fields = rest.split()
        slot = out.setdefault(name, [0.0, 0])
        slot[0] += (int(fields[11]) + int(fields[12])) / TICK
        slot[1] += switches
    return out

def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

t0 = time.monotonic()
while True:
    if not alive(sim) or not alive(engine):
        sys.exit("the simulator or the engine stopped:\n" + open(sim_log).read()[-2000:])
    listed = len(cli("devices", "list"))
    if listed >= devices:
        break
    if time.monotonic() - t0 > 120:
        sys.exit(f"only {listed} of {devices} devices registered after 120 s")
    time.sleep(0.5)
print(f"{devices:,} devices listed {time.monotonic() - t0:.1f} s after the simulator started")

# The fleet's background traffic, with nothing to update: the idle rate of engine CPU.
c0 = cpu_s(engine)
time.sleep(idle)
idle_rate = (cpu_s(engine) - c0) / idle
rss_before = mem_kib(engine, "VmRSS:")

perf = None
if perf_data:  # DWARF call graphs: release builds keep line tables but no frame pointers
    perf = subprocess.Popen(["perf", "record", "-F", os.environ.get("PERF_FREQ", "499"), "--call-graph", "dwarf,16384", "-p", str(engine), "-o", perf_data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
threads_start = threads(engine)
load_before = open("/proc/loadavg").read().split()[0]
cpu_start, wall_start = cpu_s(engine), time.monotonic()
created = cli("rollout", "create", "--firmware", "2.0.0", "--target", "all", "--waves", "1,10%,50%,100%",
              "--concurrency", concurrency, "--timeout", "2m", "--start")
rid = created["rollout"]["id"]
state = created["rollout"]["state"]
while state not in ("completed", "cancelled", "paused"):
    if time.monotonic() - wall_start > limit:
        break
    time.sleep(0.5)
    # The list (counts only) is cheap for the engine; the full detail is read once, at the end.
    state = next(r["state"] for r in cli("rollout", "list") if r["id"] == rid)
wall = time.monotonic() - wall_start
cpu = cpu_s(engine) - cpu_start
threads_end = threads(engine)
if perf:
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=120)
    print(f"engine profile of the rollout written to {perf_data} (perf report -i {perf_data} --no-children)")
peak, rss_end = mem_kib(engine, "VmHWM:"), mem_kib(engine, "VmRSS:")
sim_rss, sim_peak = mem_kib(sim, "VmRSS:"), mem_kib(sim, "VmHWM:")
detail = cli("rollout", "status", str(rid))
counts = detail["rollout"]["counts"]
updated = counts["succeeded"]
versions = {}
for d in cli("devices", "list"):
    versions[d["version"]] = versions.get(d["version"], 0) + 1

per_device = cpu * 1000 / max(updated, 1)
net = max(cpu - idle_rate * wall, 0) * 1000 / max(updated, 1)
mib = lambda kib: kib / 1024
mark = lambda ok: "ok" if ok else "MISSED"
print()
print(f"rollout {rid}: {state} in {wall:.1f} s (one run; 1-minute load average {load_before} before it, "
      f"{open('/proc/loadavg').read().split()[0]} after); jobs: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
print(f"inventory versions: " + ", ".join(f"{v} x{n}" for v, n in sorted(versions.items())))
print(f"  devices updated        {updated:,} of {devices:,}")
print(f"  wall time              {wall:.1f} s")
print(f"  engine CPU, rollout    {cpu:.2f} s (idle fleet traffic alone: {idle_rate * 1000:.1f} ms/s, "
      f"~{idle_rate * wall:.2f} s of it)")
print(f"  engine CPU per device  {per_device:.3f} ms (net of idle traffic {net:.3f} ms)   target < 1 ms    {mark(per_device < 1)}")
print(f"  engine RSS             peak {mib(peak):.1f} MiB, at the end {mib(rss_end):.1f} MiB "
      f"(before the rollout {mib(rss_before):.1f} MiB)   target < 150 MB   {mark(peak * 1024 < 150e6)}")
print(f"  simulator RSS          {mib(sim_rss):.1f} MiB (peak {mib(sim_peak):.1f} MiB)")
print("  engine threads         " + "; ".join(
    f"{name} {cpu_t - threads_start.get(name, [0, 0])[0]:.2f} s, {sw - threads_start.get(name, [0, 0])[1]:,} switches"
    for name, (cpu_t, sw) in sorted(threads_end.items(), key=lambda kv: -kv[1][0])
    if cpu_t - threads_start.get(name, [0, 0])[0] > 0.005))
ok = state == "completed" and updated == devices and per_device < 1 and peak * 1024 < 150e6
sys.exit(0 if ok else 1)
PY
