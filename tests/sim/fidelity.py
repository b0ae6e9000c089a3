"""The simulator's vendor devices, read by the libraries Home Assistant reads real devices with.

Run by the e2e test `sim_fidelity` inside a fresh network namespace (loopback only, multicast
routed to lo), as root so the Shelly Gen1 devices can listen on port 80 (aioshelly's Gen1 reader
only speaks to port 80):
    fidelity.py '{"sim": "/path/flotilla-sim", "block": 47}'
It starts Debian's mosquitto and `flotilla-sim` with one or two devices of every family, then
- zeroconf browses `_shelly._tcp`, `_http._tcp`, `_esphomelib._tcp`, `_arduino._tcp` and
  resolves every instance, as it does real devices' records;
- hatasmota validates the retained `tasmota/discovery/<MAC>/config` and `sensors` with its
  discovery schema and builds the device config and entities from them;
- aioshelly reads `/shelly` of Gen1 and Gen2+ devices (`get_info`), Gen1 `/settings` and `/status`
  through `BlockDevice`, Gen2+ `Shelly.GetDeviceInfo` / `Shelly.GetStatus` over HTTP RPC, and
  initializes `RpcDevice` over the WebSocket RPC channel, switches the relay there and receives
  the device's `NotifyStatus`;
- a Tasmota web password gives the firmware's 401 WARNING, and the right one the status.
Prints one line per check and "ALL OK"; exits 1 at the first mismatch.
"""

import asyncio
import base64
import json
import socket
import subprocess
import sys
import time

import aiohttp
import paho.mqtt.client as mqtt
from aioshelly.block_device import BlockDevice
from aioshelly.common import ConnectionOptions, get_info
from aioshelly.const import MODEL_NAMES
from aioshelly.rpc_device import RpcDevice, RpcUpdateType
from hatasmota import discovery as tdisc
from hatasmota.sensor import get_sensor_entities
from zeroconf import IPVersion, ServiceBrowser, Zeroconf

COUNTS = {"tasmota": 2, "shelly1": 2, "shelly2": 2, "esphome": 2, "arduino": 2}
PASSWORD = "s3cret-web"


def check(ok, what, detail=""):
    if not ok:
        print(f"FAIL: {what} {detail}", flush=True)
        raise SystemExit(1)
    print(f"ok: {what}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(req):
    port = free_port()
    broker = subprocess.Popen(["mosquitto", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    args = [req["sim"], "--mqtt", f"mqtt://127.0.0.1:{port}", "--address-block", str(req["block"]),
            "--device-port", "80", "--tasmota-mdns", "--tasmota-password", PASSWORD]
    for kind, n in COUNTS.items():
        args += [f"--{kind}", str(n)]
    sim = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    line = sim.stdout.readline()
    check(line.startswith("flotilla-sim: 10 devices"), "the simulator started", line)
    return broker, sim, port


def addresses(block):
    """Fleet order: tasmota, shelly1, shelly2, esphome, arduino (127.<block>.0.1 onwards)."""
    out, i = {}, 1
    for kind, n in COUNTS.items():
        out[kind] = [f"127.{block}.0.{i + k}" for k in range(n)]
        i += n
    return out


def browse(ips):
    zc = Zeroconf(ip_version=IPVersion.V4Only)
    names = {}

    class Listener:
        def add_service(self, zc, type_, name):
            names[name] = type_

        def update_service(self, zc, type_, name):
            names[name] = type_

        def remove_service(self, zc, type_, name):
            pass

    types = ["_shelly._tcp.local.", "_http._tcp.local.", "_esphomelib._tcp.local.", "_arduino._tcp.local."]
    browsers = [ServiceBrowser(zc, t, Listener()) for t in types]
    deadline = time.time() + 15
    want = 2 + 2 + 2 * 2 + 2 * 2 + 2  # tasmota http, gen1 http, gen2 shelly+http, esphome api+http, arduino
    while len(names) < want and time.time() < deadline:
        time.sleep(0.2)
    infos = {}
    for name, type_ in names.items():
        info = zc.get_service_info(type_, name, 3000)
        check(info is not None, f"zeroconf resolves {name}")
        infos[name] = info
    for b in browsers:
        b.cancel()
    zc.close()
    check(len(infos) == want, f"zeroconf found all {want} instances", sorted(infos))
    by_type = {}
    for name, info in infos.items():
        props = {k.decode(): (v.decode() if v is not None else None) for k, v in info.properties.items()}
        by_type.setdefault(info.type, []).append((name, info, props))
    for name, info, p in by_type["_esphomelib._tcp.local."]:
        check(info.port == 6053 and p["platform"] == "ESP32" and len(p["mac"]) == 12 and p["mac"] == p["mac"].lower(),
              f"ESPHome TXT of {name}", p)
        check(info.parsed_addresses()[0] in ips["esphome"], f"ESPHome address of {name}")
    for name, info, p in by_type["_arduino._tcp.local."]:
        check(set(p) == {"board", "tcp_check", "ssh_upload", "auth_upload"} and info.port in (8266, 3232),
              f"ArduinoOTA TXT and port of {name}", (info.port, p))
    shelly = by_type["_shelly._tcp.local."]
    check(len(shelly) == 2 and all(p["gen"] == "2" and p["id"] == n.split(".")[0] for n, _, p in shelly),
          "Gen2 _shelly._tcp instances carry gen=2 and their id", shelly)
    http = by_type["_http._tcp.local."]
    gen1 = [(n, p) for n, _, p in http if n.startswith("shelly1-")]
    check(len(gen1) == 2 and all("gen" not in p and p["arch"] == "esp8266" and p["fw_id"].startswith("2023") for _, p in gen1),
          "Gen1 _http._tcp instances: shelly1-<MAC>, no gen, fw_id", gen1)
    tas = [(n, p) for n, _, p in http if p.get("devicetype") == "tasmota"]
    check(len(tas) == 2, "Tasmota _http._tcp devicetype=tasmota", tas)
    # An empty TXT is one empty string on the wire (RFC 6763 §6.1), which zeroconf reads as {"": None}.
    esp_http = [(n, info.port, p) for n, info, p in http if info.parsed_addresses()[0] in ips["esphome"]]
    esp_names = {n.split(".")[0] for n, _, _ in by_type["_esphomelib._tcp.local."]}
    check(len(esp_http) == 2 and all(port == 80 and not any(p) and n.split(".")[0] in esp_names for n, port, p in esp_http),
          "ESPHome web_server _http._tcp: the node's name, port 80, no TXT", esp_http)
    return infos


def hatasmota_reads(port, ips):
    got = {}

    def on_message(client, userdata, msg):
        got[msg.topic] = msg.payload

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe("tasmota/discovery/#")
    c.subscribe("shellies/#")
    c.subscribe("+/online")
    c.subscribe("esphome/discover/+")
    c.subscribe("tele/+/LWT")
    c.loop_start()
    deadline = time.time() + 10
    while time.time() < deadline and sum(t.endswith("/config") for t in got) < 2:
        time.sleep(0.1)
    time.sleep(0.5)
    c.loop_stop()
    c.disconnect()
    configs = {t: p for t, p in got.items() if t.startswith("tasmota/discovery/") and t.endswith("/config")}
    check(len(configs) == 2, "two retained Tasmota discovery configs", sorted(got))
    for topic, payload in configs.items():
        mac = topic.split("/")[2]
        msg = tdisc.TasmotaDiscoveryMsg(json.loads(payload))  # the schema: raises on any mismatch
        check(msg["mac"] == mac, f"hatasmota: the config's MAC is the topic's ({mac})")
        cfg = tdisc.get_device_config(msg)
        check(cfg["sw"] == "14.3.0" and cfg["md"] == "Sonoff Basic" and cfg["mac"] == mac and cfg["ip"] in ips["tasmota"],
              f"hatasmota device config of {mac}", cfg)
        relays = [e for e, _ in tdisc.get_entities_for_platform(msg, "switch") if e is not None]
        check(len(relays) == 1, f"hatasmota: one relay entity on {mac}", relays)
        sensors = json.loads(got[f"tasmota/discovery/{mac}/sensors"])
        check(tdisc.TASMOTA_SENSOR_DISCOVERY_SCHEMA(sensors) is not None, f"hatasmota sensors schema of {mac}")
        get_sensor_entities(sensors, msg)  # raises on a sensor payload it cannot read
        check(got.get(f"tele/{msg['t']}/LWT") == b"Online", f"Tasmota LWT Online for {msg['t']}")
    announces = [t for t in got if t.startswith("shellies/") and t.endswith("/online")]
    check(len(announces) == 2 and all(got[t] == b"true" for t in announces), "Gen1 shellies/<id>/online true", announces)
    gen2 = [t for t in got if t.startswith("shellyplus1pm-") and t.endswith("/online")]
    check(len(gen2) == 2 and all(got[t] == b"true" for t in gen2), "Gen2 <id>/online true", gen2)
    esp = [json.loads(p) for t, p in got.items() if t.startswith("esphome/discover/")]
    check(len(esp) == 2 and all(len(e["mac"]) == 12 and e["version"] for e in esp), "ESPHome discovery", esp)


async def aioshelly_reads(ips):
    async with aiohttp.ClientSession() as session:
        for ip in ips["shelly1"]:
            info = await get_info(session, ip)
            check(info["type"] == "SHSW-1" and info["auth"] is False and "gen" not in info, f"aioshelly get_info Gen1 {ip}", info)
            check(MODEL_NAMES.get(info["type"]) is not None, f"aioshelly knows model {info['type']}")
            dev = BlockDevice(_NoCoap(), session, ConnectionOptions(ip))
            dev._shelly = info
            await dev.update_settings()
            await dev.update_status()
            # BlockDevice.initialize does exactly these HTTP reads, then CoAP (not simulated).
            dev.initialized = True
            check(dev.settings["device"]["type"] == "SHSW-1" and dev.status["update"]["status"] == "idle",
                  f"aioshelly BlockDevice /settings and /status of {ip}")
            check(dev.firmware_version == info["fw"] and dev.firmware_supported, f"aioshelly: Gen1 firmware supported ({ip})")
            check(dev.hostname == dev.settings["device"]["hostname"], f"aioshelly: Gen1 hostname ({ip})")
        for ip in ips["shelly2"]:
            info = await get_info(session, ip)
            check(info["gen"] == 2 and info["id"].startswith("shellyplus1pm-") and info["auth_en"] is False,
                  f"aioshelly get_info Gen2 {ip}", info)
            check(MODEL_NAMES.get(info["model"]) is not None, f"aioshelly knows model {info['model']}")
            async with session.get(f"http://{ip}/rpc/Shelly.GetStatus") as r:
                status = await r.json()
            check(status["sys"]["mac"] == info["mac"] and "switch:0" in status, f"Gen2 Shelly.GetStatus over HTTP ({ip})")
            async with session.post(f"http://{ip}/rpc", json={"id": 7, "src": "ha", "method": "Shelly.GetDeviceInfo"}) as r:
                frame = await r.json()
            check(frame["id"] == 7 and frame["dst"] == "ha" and frame["result"] == info, f"Gen2 RPC frame over HTTP ({ip})")
            await rpc_device_over_websocket(session, ip, info)
        for ip in ips["tasmota"]:
            async with session.get(f"http://{ip}/cm", params={"cmnd": "Status 0"}) as r:
                body = await r.json()
                check(r.status == 401 and body == {"WARNING": "Need user=<username>&password=<password>"},
                      f"Tasmota with a web password says 401 WARNING ({ip})", (r.status, body))
            async with session.get(f"http://{ip}/cm", params={"cmnd": "Status 2", "user": "admin", "password": PASSWORD}) as r:
                body = await r.json()
                check(body["StatusFWR"]["Version"] == "14.3.0(release-tasmota)", f"Tasmota Status 2 with the password ({ip})")
            basic = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
            async with session.get(f"http://{ip}/cm", params={"cmnd": "Status 0"}, headers=basic) as r:
                body = await r.json()
                check(body["StatusNET"]["IPAddress"] == ip and len(body["StatusNET"]["Mac"]) == 17,
                      f"Tasmota Status 0 with Basic auth ({ip})")


async def rpc_device_over_websocket(session, ip, info):
    """What Home Assistant does with a Gen2+ device: RpcDevice over ws://<ip>/rpc."""
    dev = await RpcDevice.create(session, None, ConnectionOptions(ip))
    updates = []
    dev.subscribe_updates(lambda _dev, kind: updates.append(kind))
    await dev.initialize()  # Shelly.GetDeviceInfo, then GetConfig + GetStatus + GetComponents
    try:
        check(dev.initialized and dev.connected, f"aioshelly RpcDevice initialized over WebSocket ({ip})")
        check(dev.shelly == info and dev.status["sys"]["mac"] == info["mac"]
              and dev.config["sys"]["device"]["mac"] == info["mac"],
              f"aioshelly RpcDevice: device info, status and config over WebSocket ({ip})")
        check(dev.firmware_version == info["fw_id"] and dev.firmware_supported and dev.gen == 2,
              f"aioshelly RpcDevice: Gen2 firmware supported ({ip})")
        check(dev.status["switch:0"]["output"] is False, f"relay off before Switch.Set ({ip})")
        result = await dev.call_rpc("Switch.Set", {"id": 0, "on": True})
        check(result == {"was_on": False}, f"Switch.Set over WebSocket ({ip})", result)
        for _ in range(100):  # the device pushes NotifyStatus; aioshelly merges it into status
            if dev.status["switch:0"]["output"] is True:
                break
            await asyncio.sleep(0.02)
        check(dev.status["switch:0"]["output"] is True and RpcUpdateType.STATUS in updates,
              f"aioshelly merged the device's NotifyStatus ({ip})", updates)
        await dev.call_rpc("Switch.Set", {"id": 0, "on": False})
    finally:
        await dev.shutdown()


class _NoCoap:
    """aioshelly's BlockDevice wants a CoAP context only to subscribe to pushes; none here."""

    def subscribe_updates(self, ip, callback):
        return lambda: None


def main():
    req = json.loads(sys.argv[1])
    broker, sim, port = start(req)
    try:
        ips = addresses(req["block"])
        browse(ips)
        hatasmota_reads(port, ips)
        asyncio.run(aioshelly_reads(ips))
        print("ALL OK", flush=True)
        return 0
    finally:
        sim.terminate()
        broker.terminate()
        sim.wait(10)
        broker.wait(10)


if __name__ == "__main__":
    sys.exit(main())
