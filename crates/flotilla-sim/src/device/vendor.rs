//! Vendor personalities: a Tasmota plug, Shelly Gen1 and Gen2+ relays, an ESPHome node and an
//! ArduinoOTA sketch, as far as discovery and identification go (`shared/reference/protocols.md`
//! §1.8, §2.5, §3.6–3.7, §4, §6, §7.2, §7.6). Each has a stable MAC and id from the seed and
//! - advertises over mDNS what its firmware advertises ([`services`], on the fleet's one
//!   responder, [`Responder`]);
//! - publishes its firmware's MQTT discovery, with the firmware's Last Will ([`run`], when the
//!   fleet has a broker);
//! - answers the HTTP endpoints firmware answers (Tasmota `/cm`, Shelly `/shelly`, `/settings`,
//!   `/status`, `/rpc/…`; ESPHome's `web_server`, in `esphome_web`) on its own loopback address
//!   ([`router`]).
//!
//! Update behaviour comes later; these devices only say who they are.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use mdns_sd::{ServiceDaemon, ServiceInfo};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast};

use super::{Ctx, Device};
use crate::config::MqttTarget;
use crate::identity::DeviceKind;

/// Tasmota's release the simulated plugs run.
pub const TASMOTA_VERSION: &str = "14.3.0";
/// Shelly Gen1 build (`fw`); its version is `1.14.0`.
pub const SHELLY1_FW: &str = "20230913-112003/v1.14.0-gcb84623";
/// Shelly Gen2+ build (`fw_id`) and version (`ver`).
pub const SHELLY2_FW: &str = "20241011-114455/1.4.4-g6d2a586";
pub const SHELLY2_VERSION: &str = "1.4.4";
/// ESPHome release the simulated nodes were built with.
pub const ESPHOME_VERSION: &str = "2024.12.2";
/// ArduinoOTA advertises no version; the sketch's own (the fleet's `--version`) is not on the wire.
pub const ARDUINO_VERSION: &str = "unknown";

/// The version a vendor personality runs (`None` for native kinds: the fleet's `--version`).
pub fn version_of(kind: DeviceKind) -> Option<&'static str> {
    match kind {
        DeviceKind::Tasmota => Some(TASMOTA_VERSION),
        DeviceKind::Shelly1 => Some("1.14.0"),
        DeviceKind::Shelly2 => Some(SHELLY2_VERSION),
        DeviceKind::Esphome => Some(ESPHOME_VERSION),
        DeviceKind::Arduino => Some(ARDUINO_VERSION),
        DeviceKind::NativePull | DeviceKind::NativeMqtt => None,
    }
}

/// Whether the personality has an HTTP server a probe can ask (Tasmota, Shelly, ESPHome's
/// `web_server`).
pub fn has_http(kind: DeviceKind) -> bool {
    matches!(kind, DeviceKind::Tasmota | DeviceKind::Shelly1 | DeviceKind::Shelly2 | DeviceKind::Esphome)
}

/// The names one vendor device goes by, all derived from its MAC and fleet position.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// 12 upper-case hex digits, as Tasmota and Shelly write it.
    pub mac_upper: String,
    /// 12 lower-case hex digits (ESPHome's TXT, Shelly Gen2 ids).
    pub mac_lower: String,
    /// Shelly's device id, Tasmota's topic, ESPHome's node name, ArduinoOTA's hostname.
    pub id: String,
    /// The mDNS host name (without `.local.`).
    pub host: String,
    /// ESP32 for odd ArduinoOTA sketches, ESP8266 for even ones (and for Tasmota and Gen1).
    pub esp32: bool,
}

impl Names {
    pub fn of(device: &Device) -> Names {
        let mac_upper: String = device.ident.mac.chars().filter(|c| *c != ':').collect();
        let mac_lower = mac_upper.to_ascii_lowercase();
        let last6 = &mac_upper[6..];
        let n = device.ident.index;
        let (id, host, esp32) = match device.ident.kind {
            DeviceKind::Tasmota => {
                // Tasmota's default topic `tasmota_%06X` and host name `%s-%04d` (MAC's last bits).
                let tail = u32::from_str_radix(&mac_upper[8..], 16).unwrap_or(0) & 0x1fff;
                (format!("tasmota_{last6}"), format!("tasmota-{last6}-{tail:04}"), false)
            }
            DeviceKind::Shelly1 => {
                let id = format!("shelly1-{mac_upper}");
                (id.clone(), id, false)
            }
            DeviceKind::Shelly2 => {
                let id = format!("shellyplus1pm-{mac_lower}");
                (id.clone(), id, true)
            }
            DeviceKind::Esphome => {
                let name = format!("{}-{}", device.ident.id, &mac_lower[6..]);
                (name.clone(), name, true)
            }
            DeviceKind::Arduino => {
                let esp32 = n % 2 == 1;
                let host = if esp32 { format!("esp32-{mac_lower}") } else { format!("esp8266-{}", &mac_lower[6..]) };
                (host.clone(), host, esp32)
            }
            DeviceKind::NativePull | DeviceKind::NativeMqtt => (device.ident.id.clone(), device.ident.id.clone(), true),
        };
        Names { mac_upper, mac_lower, id, host, esp32 }
    }
}

// ---- mDNS -------------------------------------------------------------------------------------

/// One service a device advertises.
#[derive(Debug, Clone)]
pub struct Service {
    pub service_type: &'static str,
    pub instance: String,
    pub host: String,
    pub port: u16,
    pub txt: Vec<(&'static str, String)>,
}

/// What a device's firmware advertises over mDNS, on `http_port` for its web server.
pub(crate) fn services(device: &Device, http_port: u16, tasmota_mdns: bool) -> Vec<Service> {
    let names = Names::of(device);
    let svc = |service_type, port, txt: Vec<(&'static str, String)>| Service {
        service_type,
        instance: names.id.clone(),
        host: names.host.clone(),
        port,
        txt,
    };
    match device.ident.kind {
        DeviceKind::Tasmota if tasmota_mdns => {
            vec![Service {
                instance: names.host.clone(),
                ..svc("_http._tcp.local.", http_port, vec![("devicetype", "tasmota".into())])
            }]
        }
        DeviceKind::Shelly1 => vec![svc(
            "_http._tcp.local.",
            http_port,
            vec![
                ("id", names.id.clone()),
                ("fw_id", SHELLY1_FW.into()),
                ("arch", "esp8266".into()),
                ("app", "switch1".into()),
                ("fw_version", "1.0".into()),
                ("discoverable", "false".into()),
            ],
        )],
        DeviceKind::Shelly2 => {
            let txt = vec![
                ("gen", "2".into()),
                ("app", "Plus1PM".into()),
                ("ver", SHELLY2_VERSION.into()),
                ("id", names.id.clone()),
                ("fw_id", SHELLY2_FW.into()),
                ("arch", "esp8266".into()),
            ];
            vec![svc("_shelly._tcp.local.", http_port, txt.clone()), svc("_http._tcp.local.", http_port, txt)]
        }
        // The native API's service, then `web_server`'s: `_http._tcp` on its port, without TXT
        // (esphome `components/mdns/mdns_component.cpp`, `USE_WEBSERVER`).
        DeviceKind::Esphome => vec![
            svc(
                "_esphomelib._tcp.local.",
                6053,
                vec![
                    ("friendly_name", format!("Sim {}", device.ident.id)),
                    ("version", ESPHOME_VERSION.into()),
                    ("mac", names.mac_lower.clone()),
                    ("platform", "ESP32".into()),
                    ("board", "esp32dev".into()),
                    ("network", "wifi".into()),
                ],
            ),
            svc("_http._tcp.local.", http_port, Vec::new()),
        ],
        DeviceKind::Arduino => {
            let (board, port) = if names.esp32 { ("esp32", 3232) } else { ("nodemcuv2", 8266) };
            vec![svc(
                "_arduino._tcp.local.",
                port,
                vec![
                    ("board", board.into()),
                    ("tcp_check", "no".into()),
                    ("ssh_upload", "no".into()),
                    ("auth_upload", "no".into()),
                ],
            )]
        }
        DeviceKind::Tasmota | DeviceKind::NativePull | DeviceKind::NativeMqtt => Vec::new(),
    }
}

/// The fleet's one mDNS responder: every vendor device's services on one daemon. Dropping it
/// sends goodbyes and stops the daemon's thread.
pub struct Responder {
    daemon: ServiceDaemon,
    registered: Vec<String>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").field("services", &self.registered.len()).finish_non_exhaustive()
    }
}

impl Responder {
    pub fn start() -> Result<Responder, String> {
        let daemon = ServiceDaemon::new().map_err(|e| format!("mDNS: cannot start: {e}"))?;
        Ok(Responder { daemon, registered: Vec::new() })
    }

    /// Registers `service` for `ip`; a failure is logged and that service is left out.
    pub fn register(&mut self, ip: Ipv4Addr, service: &Service) {
        let txt: Vec<(&str, &str)> = service.txt.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let info = match ServiceInfo::new(
            service.service_type,
            &service.instance,
            &format!("{}.local.", service.host),
            IpAddr::V4(ip),
            service.port,
            &txt[..],
        ) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(instance = %service.instance, "mDNS: bad service: {e}");
                return;
            }
        };
        let fullname = info.get_fullname().to_owned();
        match self.daemon.register(info) {
            Ok(()) => self.registered.push(fullname),
            Err(e) => tracing::warn!(instance = %service.instance, "mDNS: cannot register: {e}"),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        for name in &self.registered {
            let _ = self.daemon.unregister(name);
        }
        let _ = self.daemon.shutdown();
    }
}

// ---- MQTT -------------------------------------------------------------------------------------

/// What a device publishes on each connection: (topic, payload, retained).
type Publication = (String, Vec<u8>, bool);

/// The Last Will and the discovery messages of a device's firmware; `None` when it has no MQTT.
pub(crate) fn mqtt_messages(
    device: &Device,
    http_port: u16,
    esphome_mqtt: bool,
) -> Option<(String, LastWill, Vec<Publication>)> {
    let names = Names::of(device);
    let ip = device.ident.ip.to_string();
    let retained = |t: String, p: Vec<u8>| (t, p, true);
    match device.ident.kind {
        DeviceKind::Tasmota => {
            let lwt = format!("tele/{}/LWT", names.id);
            let client = format!("DVES_{}", &names.mac_upper[6..]);
            let will = LastWill::new(lwt.clone(), b"Offline".to_vec(), QoS::AtLeastOnce, true);
            let config = tasmota_config(device, &names);
            let sensors = json!({ "sn": { "Time": "2024-12-01T12:00:00" }, "ver": 1 });
            Some((
                client,
                will,
                vec![
                    retained(lwt, b"Online".to_vec()),
                    retained(format!("tasmota/discovery/{}/config", names.mac_upper), config.to_string().into_bytes()),
                    retained(format!("tasmota/discovery/{}/sensors", names.mac_upper), sensors.to_string().into_bytes()),
                    (
                        format!("tele/{}/INFO1", names.id),
                        json!({"Info1": {"Module": "Sonoff Basic", "Version": format!("{TASMOTA_VERSION}(release-tasmota)"),
                            "FallbackTopic": format!("cmnd/DVES_{}_fb/", &names.mac_upper[6..]), "GroupTopic": "cmnd/tasmotas/"}})
                        .to_string()
                        .into_bytes(),
                        false,
                    ),
                ],
            ))
        }
        DeviceKind::Shelly1 => {
            let online = format!("shellies/{}/online", names.id);
            let will = LastWill::new(online.clone(), b"false".to_vec(), QoS::AtLeastOnce, true);
            let announce = json!({
                "id": names.id, "model": "SHSW-1", "mac": names.mac_upper, "ip": ip,
                "new_fw": false, "fw_ver": SHELLY1_FW,
            });
            Some((
                names.id,
                will,
                vec![
                    retained(online, b"true".to_vec()),
                    ("shellies/announce".to_owned(), announce.to_string().into_bytes(), false),
                ],
            ))
        }
        DeviceKind::Shelly2 => {
            let online = format!("{}/online", names.id);
            let will = LastWill::new(online.clone(), b"false".to_vec(), QoS::AtLeastOnce, true);
            let _ = http_port;
            Some((names.id, will, vec![retained(online, b"true".to_vec())]))
        }
        DeviceKind::Esphome => {
            let status = format!("{}/status", names.id);
            let will = LastWill::new(status.clone(), b"offline".to_vec(), QoS::AtLeastOnce, true);
            let mut out = vec![retained(status, b"online".to_vec())];
            if esphome_mqtt {
                let discover = json!({
                    "ip": ip, "name": names.id, "friendly_name": format!("Sim {}", device.ident.id),
                    "port": 6053, "version": ESPHOME_VERSION, "mac": names.mac_lower,
                    "platform": "ESP32", "board": "esp32dev", "network": "wifi", "api_encryption": null,
                });
                out.push(retained(format!("esphome/discover/{}", names.id), discover.to_string().into_bytes()));
            }
            Some((names.id, will, out))
        }
        DeviceKind::Arduino | DeviceKind::NativePull | DeviceKind::NativeMqtt => None,
    }
}

/// Tasmota's `tasmota/discovery/<MAC>/config` for a one-relay plug (§3.7; every key hatasmota
/// requires, with the array lengths Tasmota 14 sends).
fn tasmota_config(device: &Device, names: &Names) -> Value {
    let mut rl = vec![0u8; 28];
    rl[0] = 1;
    let mut fn_ = vec![Value::Null; 8];
    fn_[0] = json!("Tasmota");
    json!({
        "ip": device.ident.ip.to_string(),
        "dn": "Tasmota",
        "fn": fn_,
        "hn": names.host,
        "mac": names.mac_upper,
        "md": "Sonoff Basic",
        "ty": 0,
        "if": 0,
        "cam": 0,
        "ofln": "Offline",
        "onln": "Online",
        "state": ["OFF", "ON", "TOGGLE", "HOLD"],
        "sw": TASMOTA_VERSION,
        "t": names.id,
        "ft": "%prefix%/%topic%/",
        "tp": ["cmnd", "stat", "tele"],
        "rl": rl,
        "swc": vec![-1; 28],
        "swn": vec![Value::Null; 28],
        "btn": vec![0; 32],
        "so": {"4": 0, "11": 0, "13": 0, "17": 0, "20": 0, "30": 0, "68": 0, "73": 0, "82": 0, "114": 0, "117": 0},
        "lk": 0,
        "lt_st": 0,
        "bat": 0,
        "dslp": 0,
        "sho": [],
        "sht": [],
        "ver": 1,
    })
}

/// Keeps a vendor device connected to the broker: Last Will, then its discovery messages on every
/// (re)connection. Returns only when the task is aborted.
pub(crate) async fn run(device: Arc<Device>, ctx: Arc<Ctx>) {
    let Some(target) = ctx.mqtt.clone() else { return std::future::pending().await };
    let port = device.port();
    let Some((client_id, will, messages)) = mqtt_messages(&device, port, ctx.config.esphome_mqtt) else {
        return std::future::pending().await;
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        session(&device, &target, &client_id, will.clone(), &messages).await;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn session(device: &Device, target: &MqttTarget, client_id: &str, will: LastWill, messages: &[Publication]) {
    let mut opts = MqttOptions::new(client_id, target.host.clone(), target.port);
    opts.set_keep_alive(Duration::from_secs(30)).set_clean_session(true).set_last_will(will);
    if let Some((user, pass)) = &target.credentials {
        opts.set_credentials(user.clone(), pass.clone());
    }
    let (client, mut events) = AsyncClient::new(opts, messages.len() + 4);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                for (topic, payload, retain) in messages {
                    if let Err(e) = client.try_publish(topic.clone(), QoS::AtLeastOnce, *retain, payload.clone()) {
                        tracing::debug!(device = %device.ident.id, "cannot queue {topic}: {e}");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(device = %device.ident.id, "broker connection: {e}");
                return;
            }
        }
    }
}

// ---- HTTP -------------------------------------------------------------------------------------

#[derive(Debug)]
pub(super) struct Web {
    device: Arc<Device>,
    pub(super) names: Names,
    /// Tasmota's web password (user `admin`).
    password: Option<String>,
    /// A Shelly relay's output (`switch:0`), which `Switch.Set` changes.
    output: AtomicBool,
    /// Gen2+ `NotifyStatus` frames for the WebSocket channels (`shelly_ws`), without `dst`.
    pub(super) notify: broadcast::Sender<Value>,
    /// Open WebSocket channels: a real Gen2 device serves a handful at once.
    pub(super) sockets: Arc<Semaphore>,
}

impl Web {
    pub(super) fn new(device: Arc<Device>, password: Option<String>) -> Web {
        Web {
            names: Names::of(&device),
            device,
            password,
            output: AtomicBool::new(false),
            notify: broadcast::channel(16).0,
            sockets: Arc::new(Semaphore::new(super::shelly_ws::MAX_SOCKETS)),
        }
    }
}

/// The HTTP endpoints of a vendor device (an empty router for kinds without a web server).
pub(crate) fn router(device: Arc<Device>, password: Option<String>) -> Router {
    let kind = device.ident.kind;
    let web = Arc::new(Web::new(device, password));
    let r = Router::new();
    let r = match kind {
        DeviceKind::Tasmota => r.route("/cm", get(tasmota_cm)),
        DeviceKind::Shelly1 => r
            .route("/shelly", get(shelly1_info))
            .route("/settings", get(shelly1_settings))
            .route("/status", get(shelly1_status)),
        DeviceKind::Shelly2 => r
            .route("/shelly", get(shelly2_info))
            .route("/rpc/{method}", get(shelly2_rpc_get).post(shelly2_rpc_get))
            .route("/rpc", get(super::shelly_ws::upgrade).post(shelly2_rpc_frame)),
        DeviceKind::Esphome => return super::esphome_web::router(&format!("Sim {}", web.device.ident.id)),
        _ => r,
    };
    r.with_state(web)
}

/// Binds `ip:port`; on a port already taken, any port. `None` (logged) when nothing binds.
pub(crate) async fn bind(ip: Ipv4Addr, port: u16) -> Option<TcpListener> {
    match TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), port)).await {
        Ok(l) => Some(l),
        Err(first) if port != 0 => match TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0)).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(%ip, "vendor web server cannot listen: {first}; then {e}");
                None
            }
        },
        Err(e) => {
            tracing::warn!(%ip, "vendor web server cannot listen: {e}");
            None
        }
    }
}

/// Serves `router` on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, router: Router, id: String) {
    if let Err(e) = axum::serve(listener, router).await {
        tracing::warn!(device = %id, "vendor web server stopped: {e}");
    }
}

fn tasmota_status(web: &Web, which: &str) -> Value {
    let d = &web.device.ident;
    let n = &web.names;
    let mac = d.mac.clone();
    let fwr = json!({
        "Version": format!("{TASMOTA_VERSION}(release-tasmota)"), "BuildDateTime": "2024-10-15T08:11:38",
        "Boot": 31, "Core": "2_7_7", "SDK": "2.2.2-dev(38a443e)", "CpuFrequency": 80,
        "Hardware": "ESP8266EX", "CR": "378/699",
    });
    if which == "2" {
        return json!({ "StatusFWR": fwr });
    }
    json!({
        "Status": {
            "Module": 1, "DeviceName": "Tasmota", "FriendlyName": ["Tasmota"], "Topic": n.id,
            "ButtonTopic": "0", "Power": "0", "PowerLock": "0", "PowerOnState": 3, "LedState": 1,
            "LedMask": "FFFF", "SaveData": 1, "SaveState": 1, "SwitchTopic": "0",
            "SwitchMode": [0, 0, 0, 0, 0, 0, 0, 0], "ButtonRetain": 0, "SwitchRetain": 0,
            "SensorRetain": 0, "PowerRetain": 0, "InfoRetain": 0, "StateRetain": 0, "StatusRetain": 0,
        },
        "StatusPRM": {
            "Baudrate": 115200, "SerialConfig": "8N1", "GroupTopic": "tasmotas", "OtaUrl": "http://ota.tasmota.com/tasmota/release/tasmota.bin.gz",
            "RestartReason": "Software/System restart", "Uptime": "0T00:10:00", "StartupUTC": "2024-12-01T11:50:00",
            "Sleep": 50, "CfgHolder": 4617, "BootCount": 12, "BCResetTime": "2024-01-01T00:00:00",
            "SaveCount": 40, "SaveAddress": "F5000",
        },
        "StatusFWR": fwr,
        "StatusLOG": { "SerialLog": 0, "WebLog": 2, "MqttLog": 0, "SysLog": 0, "LogHost": "", "LogPort": 514,
            "SSId": ["site", ""], "TelePeriod": 300, "Resolution": "558180C0", "SetOption": ["00008009", "2805C80001000600003C5A0A192800000000", "00000080", "00006000", "00004000", "00000000"] },
        "StatusMEM": { "ProgramSize": 629, "Free": 372, "Heap": 25, "ProgramFlashSize": 1024, "FlashSize": 1024,
            "FlashChipId": "14405E", "FlashFrequency": 40, "FlashMode": "DOUT", "Features": ["0809", "8FDAC787", "04368001", "000000CF", "010013C0", "C000F981", "00004004", "00001000", "04000020"], "Drivers": "1,2,3,4,5,6,7,8,9,10,12,16,18,19,20,21,22,24,26,27,29,30,35,37,45,62", "Sensors": "1,2,3,4,5,6" },
        "StatusNET": {
            "Hostname": n.host, "IPAddress": d.ip.to_string(), "Gateway": "127.0.0.1", "Subnetmask": "255.0.0.0",
            "DNSServer1": "127.0.0.1", "DNSServer2": "0.0.0.0", "Mac": mac, "IP6Global": "", "IP6Local": "",
            "Webserver": 2, "HTTP_API": 1, "WifiConfig": 4, "WifiPower": 17.0,
        },
        "StatusMQT": { "MqttHost": "", "MqttPort": 1883, "MqttClientMask": "DVES_%06X", "MqttClient": format!("DVES_{}", &n.mac_upper[6..]),
            "MqttUser": "DVES_USER", "MqttCount": 1, "MAX_PACKET_SIZE": 1200, "KEEPALIVE": 30, "SOCKET_TIMEOUT": 4 },
        "StatusTIM": { "UTC": "2024-12-01T12:00:00Z", "Local": "2024-12-01T12:00:00", "StartDST": "2024-03-31T02:00:00",
            "EndDST": "2024-10-27T03:00:00", "Timezone": "+00:00", "Sunrise": "07:50", "Sunset": "16:00" },
        "StatusSNS": { "Time": "2024-12-01T12:00:00" },
        "StatusSTS": { "Time": "2024-12-01T12:00:00", "Uptime": "0T00:10:00", "UptimeSec": 600, "Heap": 25,
            "SleepMode": "Dynamic", "Sleep": 50, "LoadAvg": 19, "MqttCount": 1, "POWER": "OFF",
            "Wifi": { "AP": 1, "SSId": "site", "BSSId": "00:00:00:00:00:01", "Channel": 6, "Mode": "11n", "RSSI": 80, "Signal": -60, "LinkCount": 1, "Downtime": "0T00:00:03" } },
    })
}

/// Tasmota's `GET /cm?cmnd=…`: `Status 0` and `Status 2`; with a web password, 401 and the
/// WARNING unless `user`/`password` (query) or Basic auth match (user `admin`).
async fn tasmota_cm(
    State(web): State<Arc<Web>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(password) = &web.password {
        let by_query = q.get("user").is_some_and(|u| u == "admin") && q.get("password") == Some(password);
        let by_basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .is_some_and(|b| b == format!("admin:{password}").as_bytes());
        if !by_query && !by_basic {
            let body = json!({ "WARNING": "Need user=<username>&password=<password>" });
            return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        }
    }
    let cmnd = q.get("cmnd").map(|c| c.trim().to_ascii_lowercase()).unwrap_or_default();
    let mut words = cmnd.split_whitespace();
    match (words.next(), words.next()) {
        (Some("status"), Some("0")) => Json(tasmota_status(&web, "0")).into_response(),
        (Some("status"), Some("2")) => Json(tasmota_status(&web, "2")).into_response(),
        (Some("status"), None) => Json(json!({ "Status": tasmota_status(&web, "0")["Status"] })).into_response(),
        _ => Json(json!({ "Command": "Unknown" })).into_response(),
    }
}

fn shelly1_info_value(web: &Web) -> Value {
    json!({
        "type": "SHSW-1", "mac": web.names.mac_upper, "auth": false, "fw": SHELLY1_FW,
        "discoverable": false, "longid": 1, "num_outputs": 1,
    })
}

async fn shelly1_info(State(web): State<Arc<Web>>) -> Json<Value> {
    Json(shelly1_info_value(&web))
}

async fn shelly1_settings(State(web): State<Arc<Web>>) -> Json<Value> {
    let n = &web.names;
    Json(json!({
        "device": { "type": "SHSW-1", "mac": n.mac_upper, "hostname": n.id, "num_outputs": 1 },
        "wifi_ap": { "enabled": false, "ssid": n.id, "key": "" },
        "wifi_sta": { "enabled": true, "ssid": "site", "ipv4_method": "dhcp", "ip": null, "gw": null, "mask": null, "dns": null },
        "mqtt": { "enable": true, "server": "", "user": "", "id": n.id, "reconnect_timeout_max": 60.0,
            "reconnect_timeout_min": 2.0, "clean_session": true, "keep_alive": 60, "max_qos": 0, "retain": false, "update_period": 30 },
        "coiot": { "enabled": true, "update_period": 15, "peer": "" },
        "sntp": { "server": "time.google.com", "enabled": true },
        "login": { "enabled": false, "unprotected": false, "username": "admin" },
        "pin_code": "", "name": null, "fw": SHELLY1_FW, "discoverable": false,
        "build_info": { "build_id": SHELLY1_FW, "build_timestamp": "2023-09-13T11:20:03Z", "build_version": "1.0" },
        "cloud": { "enabled": false, "connected": false },
        "timezone": "Europe/Rome", "lat": 45.0, "lng": 9.0, "tzautodetect": true, "tz_utc_offset": 3600,
        "tz_dst": false, "tz_dst_auto": true, "time": "12:00", "unixtime": 1_733_054_400,
        "debug_enable": false, "allow_cross_origin": false, "ext_switch_enable": false,
        "actions": { "active": false, "names": ["btn_on_url", "btn_off_url", "out_on_url", "out_off_url"] },
        "hwinfo": { "hw_revision": "prod-190516", "batch_id": 1 },
        "mode": "relay", "max_power": 0, "longpush_time": 800,
        "relays": [{ "name": null, "appliance_type": "General", "ison": false, "has_timer": false,
            "default_state": "off", "btn_type": "toggle", "btn_reverse": 0, "auto_on": 0.0, "auto_off": 0.0, "schedule": false, "schedule_rules": [] }],
    }))
}

async fn shelly1_status(State(web): State<Arc<Web>>) -> Json<Value> {
    let n = &web.names;
    let d = &web.device.ident;
    Json(json!({
        "wifi_sta": { "connected": true, "ssid": "site", "ip": d.ip.to_string(), "rssi": -60 },
        "cloud": { "enabled": false, "connected": false },
        "mqtt": { "connected": true },
        "time": "12:00", "unixtime": 1_733_054_400, "serial": 1, "has_update": false, "mac": n.mac_upper,
        "cfg_changed_cnt": 0, "actions_stats": { "skipped": 0 },
        "relays": [{ "ison": false, "has_timer": false, "timer_started": 0, "timer_duration": 0, "timer_remaining": 0, "source": "input" }],
        "meters": [{ "power": 0, "is_valid": true }],
        "inputs": [{ "input": 0, "event": "", "event_cnt": 0 }],
        "ext_sensors": {}, "ext_temperature": {}, "ext_humidity": {},
        "update": { "status": "idle", "has_update": false, "new_version": SHELLY1_FW, "old_version": SHELLY1_FW, "beta_version": null },
        "ram_total": 51688, "ram_free": 39452, "fs_size": 233681, "fs_free": 162648, "uptime": 600,
    }))
}

fn shelly2_info_value(web: &Web) -> Value {
    json!({
        "name": null, "id": web.names.id, "mac": web.names.mac_upper, "slot": 0,
        "model": "SNSW-001P16EU", "gen": 2, "fw_id": SHELLY2_FW, "ver": SHELLY2_VERSION,
        "app": "Plus1PM", "auth_en": false, "auth_domain": null,
    })
}

async fn shelly2_info(State(web): State<Arc<Web>>) -> Json<Value> {
    Json(shelly2_info_value(&web))
}

fn shelly2_status(web: &Web) -> Value {
    let d = &web.device.ident;
    json!({
        "ble": {}, "cloud": { "connected": false },
        "input:0": { "id": 0, "state": false },
        "mqtt": { "connected": true },
        "switch:0": { "id": 0, "source": "init", "output": web.output.load(Ordering::Relaxed), "apower": 0.0, "voltage": 230.1,
            "freq": 50.0, "current": 0.0, "pf": 0.0,
            "aenergy": { "total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": 1_733_054_400 },
            "ret_aenergy": { "total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": 1_733_054_400 },
            "temperature": { "tC": 40.0, "tF": 104.0 } },
        "sys": { "mac": web.names.mac_upper, "restart_required": false, "time": "12:00", "unixtime": 1_733_054_400,
            "uptime": 600, "ram_size": 246_000, "ram_free": 150_000, "fs_size": 458_752, "fs_free": 110_592,
            "cfg_rev": 10, "kvs_rev": 0, "schedule_rev": 0, "webhook_rev": 0, "available_updates": {}, "reset_reason": 3 },
        "wifi": { "sta_ip": d.ip.to_string(), "status": "got ip", "ssid": "site", "rssi": -60 },
        "ws": { "connected": false },
    })
}

fn shelly2_config(web: &Web) -> Value {
    let n = &web.names;
    json!({
        "ble": { "enable": false },
        "cloud": { "enable": false, "server": "shelly-103-eu.shelly.cloud:6022/jrpc" },
        "input:0": { "id": 0, "name": null, "type": "switch", "enable": true, "invert": false, "factory_reset": true },
        "mqtt": { "enable": true, "server": null, "client_id": n.id, "user": null, "topic_prefix": n.id,
            "rpc_ntf": true, "status_ntf": false, "use_client_cert": false, "enable_rpc": true, "enable_control": true },
        "switch:0": { "id": 0, "name": null, "in_mode": "follow", "initial_state": "match_input",
            "auto_on": false, "auto_on_delay": 60.0, "auto_off": false, "auto_off_delay": 60.0,
            "power_limit": 4480, "voltage_limit": 280, "current_limit": 16.0 },
        "sys": { "device": { "name": null, "mac": n.mac_upper, "fw_id": SHELLY2_FW, "discoverable": true, "eco_mode": false },
            "location": { "tz": "Europe/Rome", "lat": 45.0, "lon": 9.0 },
            "debug": { "mqtt": { "enable": false }, "websocket": { "enable": false }, "udp": { "addr": null } },
            "ui_data": {}, "rpc_udp": { "dst_addr": null, "listen_port": null },
            "sntp": { "server": "time.google.com" }, "cfg_rev": 10 },
        "wifi": { "ap": { "ssid": n.id, "is_open": true, "enable": false }, "sta": { "ssid": "site", "is_open": false, "enable": true, "ipv4mode": "dhcp" } },
        "ws": { "enable": false, "server": null, "ssl_ca": "ca.pem" },
    })
}

/// An RPC error: the code and message Gen2+ firmware answers with.
type RpcError = (i64, String);

/// Answers one Gen2+ RPC method with its `params` (`Null` when none).
fn shelly2_call(web: &Web, method: &str, params: &Value) -> Result<Value, RpcError> {
    let switch_id = || match params.get("id").and_then(Value::as_u64) {
        Some(0) => Ok(()),
        Some(id) => Err((-105, format!("Argument 'id', value {id} not found!"))),
        None => Err((-103, "Missing required argument 'id'!".to_owned())),
    };
    Ok(match method {
        "Shelly.GetDeviceInfo" => shelly2_info_value(web),
        "Shelly.GetStatus" => shelly2_status(web),
        "Shelly.GetConfig" => shelly2_config(web),
        // No virtual components on a Plus 1PM: one empty page (`offset`, `total`), as firmware ≥ 1.2 says.
        "Shelly.GetComponents" => json!({ "components": [], "cfg_rev": 10, "offset": 0, "total": 0 }),
        "Sys.GetStatus" => shelly2_status(web)["sys"].clone(),
        "Shelly.CheckForUpdate" => json!({}),
        "Switch.GetStatus" => {
            switch_id()?;
            shelly2_status(web)["switch:0"].clone()
        }
        "Switch.Set" => {
            switch_id()?;
            let Some(on) = params.get("on").and_then(Value::as_bool) else {
                return Err((-103, "Missing required argument 'on'!".to_owned()));
            };
            let was_on = web.output.swap(on, Ordering::Relaxed);
            if was_on != on {
                let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
                let params = json!({ "ts": ts, "switch:0": { "id": 0, "output": on, "source": "WS_in" } });
                // Nobody listening is fine: notifications go only to open channels.
                let _ = web.notify.send(json!({ "src": web.names.id, "method": "NotifyStatus", "params": params }));
            }
            json!({ "was_on": was_on })
        }
        "Shelly.ListMethods" => json!({ "methods": [
            "Shelly.GetDeviceInfo", "Shelly.GetStatus", "Shelly.GetConfig", "Shelly.GetComponents", "Sys.GetStatus",
            "Shelly.CheckForUpdate", "Shelly.ListMethods", "Switch.GetStatus", "Switch.Set"
        ] }),
        _ => return Err((404, format!("No handler for {method}"))),
    })
}

/// The answer to one request frame `{"id","src","method","params"}`: `{"id","src","dst","result"|"error"}`.
/// Shared by `POST /rpc` and the WebSocket channel.
pub(super) fn shelly2_frame(web: &Web, frame: &Value) -> Value {
    let id = frame.get("id").cloned().unwrap_or(Value::Null);
    let dst = frame.get("src").cloned().unwrap_or(Value::Null);
    let mut out = json!({ "id": id, "src": web.names.id, "dst": dst });
    let answer = match frame.get("method").and_then(Value::as_str) {
        Some(method) => shelly2_call(web, method, frame.get("params").unwrap_or(&Value::Null)),
        None => Err((-32600, "Invalid request: no method".to_owned())),
    };
    match answer {
        Ok(v) => out["result"] = v,
        Err((code, message)) => out["error"] = json!({ "code": code, "message": message }),
    }
    out
}

/// The frame Gen2+ firmware answers to bytes that are not JSON.
pub(super) fn parse_error() -> Value {
    json!({ "id": null, "error": { "code": -32700, "message": "Parse error" } })
}

async fn shelly2_rpc_get(
    State(web): State<Arc<Web>>,
    Path(method): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // `GET /rpc/Switch.Set?id=0&on=true`: query values are JSON where they parse, strings otherwise.
    let params: serde_json::Map<String, Value> = query
        .into_iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(&v).unwrap_or(Value::String(v));
            (k, value)
        })
        .collect();
    match shelly2_call(&web, &method, &Value::Object(params)) {
        Ok(v) => Json(v).into_response(),
        Err((code, message)) => {
            let status = if code == 404 { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
            (status, Json(json!({ "code": code, "message": message }))).into_response()
        }
    }
}

/// `POST /rpc` with a whole frame.
async fn shelly2_rpc_frame(State(web): State<Arc<Web>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(frame) => Json(shelly2_frame(&web, &frame)).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, Json(parse_error())).into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::failures::Failures;
    use crate::identity::Identity;

    fn device(kind: DeviceKind, n: usize) -> Device {
        Device::new(Identity::derive(3, "sim", 30, kind, n, n).unwrap(), "1.0.0".into(), Failures::default())
    }

    #[test]
    fn names_follow_each_firmware() {
        let t = Names::of(&device(DeviceKind::Tasmota, 0));
        assert!(t.id.starts_with("tasmota_") && t.id.len() == 14, "{t:?}");
        assert!(t.host.starts_with("tasmota-") && t.mac_upper.len() == 12, "{t:?}");
        let s = Names::of(&device(DeviceKind::Shelly2, 1));
        assert_eq!(s.id, format!("shellyplus1pm-{}", s.mac_lower));
        let a = Names::of(&device(DeviceKind::Arduino, 1));
        assert!(a.esp32 && a.id.starts_with("esp32-"), "{a:?}");
    }

    #[test]
    fn services_carry_the_txt_records_of_real_firmware() {
        let e = services(&device(DeviceKind::Esphome, 0), 80, false);
        assert_eq!((e.len(), e[0].service_type, e[0].port), (2, "_esphomelib._tcp.local.", 6053));
        assert_eq!((e[1].service_type, e[1].port, e[1].txt.len()), ("_http._tcp.local.", 80, 0));
        assert!(
            e[0].txt.iter().any(|(k, v)| *k == "mac" && v.len() == 12 && v.chars().all(|c| !c.is_ascii_uppercase()))
        );
        let g2 = services(&device(DeviceKind::Shelly2, 0), 8080, false);
        assert_eq!(g2.iter().map(|s| s.service_type).collect::<Vec<_>>(), ["_shelly._tcp.local.", "_http._tcp.local."]);
        assert!(g2[0].txt.contains(&("gen", "2".into())));
        assert!(services(&device(DeviceKind::Tasmota, 0), 80, false).is_empty(), "default Tasmota advertises nothing");
        assert_eq!(services(&device(DeviceKind::Tasmota, 0), 80, true)[0].txt, [("devicetype", "tasmota".to_owned())]);
    }

    #[test]
    fn mqtt_discovery_has_the_firmware_topics() {
        let d = device(DeviceKind::Tasmota, 0);
        let (client, will, msgs) = mqtt_messages(&d, 80, true).unwrap();
        let n = Names::of(&d);
        assert_eq!(client, format!("DVES_{}", &n.mac_upper[6..]));
        assert_eq!(will.topic, format!("tele/{}/LWT", n.id));
        assert!(msgs.iter().any(|(t, _, r)| *r && *t == format!("tasmota/discovery/{}/config", n.mac_upper)));
        assert!(mqtt_messages(&device(DeviceKind::Arduino, 0), 80, true).is_none());
        let (_, _, e) = mqtt_messages(&device(DeviceKind::Esphome, 0), 80, false).unwrap();
        assert!(e.iter().all(|(t, _, _)| !t.starts_with("esphome/discover/")));
    }
}
