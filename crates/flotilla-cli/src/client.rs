//! Client subcommands: each is one admin API call, printed as a table or as stable JSON.

use std::path::Path;

use flotilla_core::DataDir;
use flotilla_core::config::default_data_dir;
use flotilla_core::firmware::{image, import};
use flotilla_proto::{
    Device, ErrorBody, Firmware, ImageInfo, ImportOptions, ImportResponse, InspectReport, PublicKey, RuntimeInfo,
    Verdict,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::output::{fields, opt, size, table};
use crate::{ApiArgs, CliError, CliResult, DevicesCmd, FirmwareCmd, KeysCmd};

/// A connection to one engine's admin API.
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// Finds the API from flags, environment, or the data dir of a running `flotilla serve`.
    pub fn resolve(args: &ApiArgs) -> CliResult<Api> {
        let dir = DataDir::new(args.data_dir.clone().unwrap_or_else(default_data_dir));
        let base = match &args.api {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let path = dir.runtime_json();
                let text = std::fs::read_to_string(&path).map_err(|_| {
                    CliError::unreachable(format!(
                        "no running engine found ({} is missing); start `flotilla serve` or pass --api",
                        path.display()
                    ))
                })?;
                let info: RuntimeInfo = serde_json::from_str(&text)
                    .map_err(|e| CliError::failure(format!("{} is unreadable: {e}", path.display())))?;
                info.admin_url
            }
        };
        let token = match &args.token {
            Some(t) => t.trim().to_owned(),
            None => {
                let path = dir.admin_token();
                std::fs::read_to_string(&path)
                    .map_err(|e| {
                        CliError::failure(format!("cannot read the admin token {}: {e}; pass --token", path.display()))
                    })?
                    .trim()
                    .to_owned()
            }
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("flotilla-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::failure(format!("cannot build HTTP client: {e}")))?;
        Ok(Api { base, token, http })
    }

    pub async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> CliResult<T> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| CliError::unreachable(format!("cannot reach the admin API at {}: {e}", self.base)))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| CliError::unreachable(format!("admin API answer broke off: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| CliError::failure(format!("unexpected answer from the admin API: {e}")));
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        Err(match status {
            s if s.is_server_error() => CliError::failure(message),
            StatusCode::UNAUTHORIZED => CliError::failure(format!("{message} (check --token / FLOTILLA_TOKEN)")),
            _ => CliError::refused(message),
        })
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.send(self.request(Method::GET, path)).await
    }

    /// A GET whose answer is text (CSV).
    pub async fn text(&self, path: &str) -> CliResult<String> {
        let resp = self
            .request(Method::GET, path)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| CliError::unreachable(format!("cannot reach the admin API at {}: {e}", self.base)))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| CliError::unreachable(format!("admin API answer broke off: {e}")))?;
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_str::<ErrorBody>(&body).map(|b| b.error.message).unwrap_or(body);
        Err(if status.is_server_error() { CliError::failure(message) } else { CliError::refused(message) })
    }
}

pub fn print_json<T: Serialize>(v: &T) -> CliResult {
    let text = serde_json::to_string_pretty(v).map_err(|e| CliError::failure(e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn firmware(cmd: FirmwareCmd) -> CliResult {
    match cmd {
        FirmwareCmd::Inspect { file, version, model, min_version, check, max_image_size, json, api } => {
            let opts = ImportOptions { version, model, min_version, ..ImportOptions::default() };
            let engine = if check { Some(Api::resolve(&api)?) } else { None };
            inspect(&file, &opts, engine.as_ref(), max_image_size, json).await
        }
        FirmwareCmd::Import { file, version, model, channel, notes, min_version, public, json, api } => {
            let api = Api::resolve(&api)?;
            let bytes =
                std::fs::read(&file).map_err(|e| CliError::failure(format!("cannot read {}: {e}", file.display())))?;
            let name =
                file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "firmware.bin".into());
            let mut form =
                reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name(name));
            for (k, v) in [
                ("version", version),
                ("model", model),
                ("channel", channel),
                ("notes", notes),
                ("min_version", min_version),
            ] {
                if let Some(v) = v {
                    form = form.text(k, v);
                }
            }
            if public {
                form = form.text("public", "true");
            }
            let res: ImportResponse = api.send(api.request(Method::POST, "/api/v1/firmware").multipart(form)).await?;
            if json {
                return print_json(&res);
            }
            let f = &res.firmware;
            if res.created {
                println!("Imported firmware {} ({} {} for {}).", f.id, f.model, f.version, f.chip);
            } else if res.gzip_added {
                println!(
                    "Already imported as firmware {} ({} {}); its .bin.gz form was added.",
                    f.id, f.model, f.version
                );
            } else {
                println!("Already imported as firmware {} ({} {}); nothing changed.", f.id, f.model, f.version);
            }
            print_firmware(f);
            Ok(())
        }
        FirmwareCmd::List { json, api } => {
            let list: Vec<Firmware> = Api::resolve(&api)?.get("/api/v1/firmware").await?;
            if json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("No firmware imported yet. Import one with `flotilla firmware import FILE`.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|f| {
                    let mut flags = Vec::new();
                    if f.blocked {
                        flags.push("blocked");
                    }
                    if f.public {
                        flags.push("public");
                    }
                    vec![
                        f.id.to_string(),
                        f.model.clone(),
                        f.version.clone(),
                        f.chip.to_string(),
                        f.channel.as_str().into(),
                        size(f.size),
                        f.sha256.chars().take(12).collect(),
                        f.created_at.clone(),
                        flags.join(","),
                    ]
                })
                .collect();
            table(&["ID", "MODEL", "VERSION", "CHIP", "CHANNEL", "SIZE", "SHA256", "IMPORTED", "FLAGS"], &rows);
            Ok(())
        }
        FirmwareCmd::Show { reference, json, api } => {
            let f: Firmware = Api::resolve(&api)?.get(&format!("/api/v1/firmware/{}", encode(&reference))).await?;
            if json {
                return print_json(&f);
            }
            print_firmware(&f);
            Ok(())
        }
        FirmwareCmd::Block { reference, api } => patch_blocked(&api, &reference, true).await,
        FirmwareCmd::Unblock { reference, api } => patch_blocked(&api, &reference, false).await,
        FirmwareCmd::Delete { reference, api } => {
            let api = Api::resolve(&api)?;
            let f: Firmware =
                api.send(api.request(Method::DELETE, &format!("/api/v1/firmware/{}", encode(&reference)))).await?;
            println!("Deleted firmware {} ({} {}).", f.id, f.model, f.version);
            Ok(())
        }
    }
}

async fn patch_blocked(api: &ApiArgs, reference: &str, blocked: bool) -> CliResult {
    let api = Api::resolve(api)?;
    let body = serde_json::json!({ "blocked": blocked });
    let f: Firmware =
        api.send(api.request(Method::PATCH, &format!("/api/v1/firmware/{}", encode(reference))).json(&body)).await?;
    println!("Firmware {} ({} {}) is {}.", f.id, f.model, f.version, if f.blocked { "blocked" } else { "unblocked" });
    Ok(())
}

/// `firmware inspect`: the image facts and the verdict of an import with `opts`. Offline (no
/// `engine`) it applies the import rules that need no library, with `max_image_size` as the OTA
/// slot; with an engine it asks it, so its library and slot limits count too. Either way the
/// verdict comes from the one function import uses (`import::assess`).
async fn inspect(
    file: &Path,
    opts: &ImportOptions,
    engine: Option<&Api>,
    max_image_size: u64,
    json: bool,
) -> CliResult {
    let bytes = std::fs::read(file).map_err(|e| CliError::failure(format!("cannot read {}: {e}", file.display())))?;
    let info = match image::inspect(&bytes) {
        Ok(info) => info,
        Err(e) => {
            if json {
                let body = serde_json::json!({ "error": { "code": "invalid_image", "message": e.to_string() } });
                println!("{body}");
            }
            return Err(CliError::refused(format!("{}: {e}", file.display())));
        }
    };
    let report: InspectReport = match engine {
        Some(api) => {
            let query: Vec<String> =
                [("version", &opts.version), ("model", &opts.model), ("min_version", &opts.min_version)]
                    .into_iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
                    .collect();
            let path = format!("/api/v1/firmware/inspect?{}", query.join("&"));
            let req = api.request(Method::POST, &path).header("content-type", "application/octet-stream").body(bytes);
            api.send(req).await?
        }
        None => {
            let assessed = import::assess(&info, opts, |_| max_image_size, None);
            import::report(info, assessed, false).map_err(|e| CliError::failure(e.to_string()))?
        }
    };
    if json {
        print_json(&report)?;
    } else {
        let mut lines = image_fields(&report.image);
        lines.extend(verdict_fields(&report));
        fields(&lines);
    }
    match &report.verdict {
        Verdict::Refused { message, .. } => Err(CliError::refused(format!("{}: {message}", file.display()))),
        _ => Ok(()),
    }
}

/// What the parser read, as `key: value` lines.
fn image_fields(i: &ImageInfo) -> Vec<(&'static str, String)> {
    let format = match i.inner_format {
        Some(inner) => format!("{} (gzip of {})", fmt_enum(&i.format), fmt_enum(&inner)),
        None => fmt_enum(&i.format),
    };
    vec![
        ("format", format),
        ("chip", i.chip.to_string()),
        ("version", opt(i.version.as_deref())),
        ("project", opt(i.project.as_deref())),
        ("idf_version", opt(i.idf_version.as_deref())),
        ("secure_version", opt(i.secure_version)),
        (
            "compiled",
            match (&i.compile_date, &i.compile_time) {
                (Some(d), Some(t)) => format!("{d} {t}"),
                _ => "-".into(),
            },
        ),
        ("size", format!("{} ({})", i.size, size(i.size))),
        ("image_size", i.image_size.to_string()),
        ("sha256", i.sha256.clone()),
        (
            "flash",
            format!(
                "{} {} {}",
                opt(i.flash_size.as_deref()),
                opt(i.flash_mode.as_deref()),
                opt(i.flash_freq.as_deref())
            ),
        ),
        (
            "chip_revisions",
            match (i.min_chip_rev, i.max_chip_rev) {
                (Some(a), Some(b)) => format!("{a}..{b}"),
                _ => "-".into(),
            },
        ),
        ("segments", i.segments.len().to_string()),
        ("digest", if i.hash_appended { "SHA-256 appended, verified".into() } else { "none appended".into() }),
        ("gzip_form", gzip_form(i)),
    ]
}

/// The gzip form of an image or firmware, in one line.
fn gzip_form(i: &ImageInfo) -> String {
    match &i.gzip {
        Some(g) => format!("{} ({}), sha256 {}", g.size, size(g.size), g.sha256),
        None => "-".into(),
    }
}

/// The verdict of an inspect (with what an import would record), as `key: value` lines.
fn verdict_fields(r: &InspectReport) -> Vec<(&'static str, String)> {
    let verdict = match &r.verdict {
        Verdict::Ready => match &r.would_record {
            Some(p) => format!("ready to import as {} {} (channel {})", p.model, p.version, p.channel.as_str()),
            None => "ready to import".into(),
        },
        Verdict::Duplicate { firmware, version, model, adds_gzip } => format!(
            "already imported as firmware {firmware} ({model} {version}); importing {}",
            if *adds_gzip { "adds its .bin.gz form" } else { "changes nothing" }
        ),
        Verdict::Refused { message, .. } => format!("refused: {message}"),
    };
    let library = if r.library_checked {
        "checked by the engine".to_owned()
    } else {
        "not checked (offline); --check asks the running engine".to_owned()
    };
    vec![("verdict", verdict), ("library", library)]
}

fn print_firmware(f: &Firmware) {
    fields(&[
        ("id", f.id.to_string()),
        ("model", f.model.clone()),
        ("version", f.version.clone()),
        ("chip", f.chip.to_string()),
        ("format", fmt_enum(&f.format)),
        ("channel", f.channel.as_str().into()),
        ("size", format!("{} ({})", f.size, size(f.size))),
        ("sha256", f.sha256.clone()),
        ("project", opt(f.project.as_deref())),
        ("idf_version", opt(f.idf_version.as_deref())),
        ("min_version", opt(f.min_version.as_deref())),
        ("blocked", f.blocked.to_string()),
        ("public", f.public.to_string()),
        ("gzip_form", gzip_form(&f.image)),
        ("signed_by", f.manifest.key_id.clone()),
        ("imported", f.created_at.clone()),
        ("notes", opt(f.notes.as_deref())),
    ]);
}

fn fmt_enum<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

pub async fn devices(cmd: DevicesCmd) -> CliResult {
    match cmd {
        DevicesCmd::List { json, api } => {
            let list: Vec<Device> = Api::resolve(&api)?.get("/api/v1/devices").await?;
            if json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("No devices yet.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|d| {
                    vec![
                        d.mac.clone(),
                        opt(d.name.as_deref().or(d.device_id.as_deref())),
                        d.family.as_str().into(),
                        opt(d.model.as_deref()),
                        opt(d.version.as_deref()),
                        opt(d.ip.as_deref()),
                        if d.online { "online".into() } else { "offline".into() },
                        d.labels.join(","),
                        d.last_seen.clone(),
                    ]
                })
                .collect();
            table(&["MAC", "NAME", "FAMILY", "MODEL", "VERSION", "IP", "STATE", "LABELS", "LAST SEEN"], &rows);
            Ok(())
        }
        DevicesCmd::Label { mac, add, remove, json, api } => {
            let api = Api::resolve(&api)?;
            let body = serde_json::json!({ "add": add, "remove": remove });
            let d: Device = api
                .send(api.request(Method::POST, &format!("/api/v1/devices/{}/labels", encode(&mac))).json(&body))
                .await?;
            if json {
                return print_json(&d);
            }
            println!("{}: {}", d.mac, if d.labels.is_empty() { "no labels".into() } else { d.labels.join(", ") });
            Ok(())
        }
    }
}

pub async fn keys(cmd: KeysCmd) -> CliResult {
    match cmd {
        KeysCmd::Export { format, api } => {
            let key: PublicKey = Api::resolve(&api)?.get("/api/v1/keys/public").await?;
            match format.as_str() {
                "pem" => print!("{}", key.public_key_pem),
                "hex" => println!("{}", key.public_key_hex),
                "json" => print_json(&key)?,
                other => return Err(CliError::refused(format!("--format {other:?}: use pem, hex or json"))),
            }
            Ok(())
        }
    }
}
