//! `flotilla firmware …`: inspect a file offline, import it, list, show, edit, block, delete, and
//! suggest what to roll out.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use flotilla_core::firmware::{image, import};
use flotilla_proto::rollout::FirmwareSuggestion;
use flotilla_proto::{
    Channel, Firmware, FirmwarePatch, ImageInfo, ImportOptions, ImportResponse, InspectReport, Verdict,
};
use reqwest::Method;
use serde::Serialize;

use crate::client::{Api, encode, print_json, print_list, with_query};
use crate::output::{fields, opt, outln, size};
use crate::{ApiArgs, CliError, CliResult};

#[derive(Debug, Subcommand)]
pub enum FirmwareCmd {
    /// Parse a firmware file and say whether an import would take it: what it is, and the
    /// verdict of the import rules (exit 2 when it would be refused). Offline unless --check.
    Inspect {
        file: PathBuf,
        /// Version the import would record (SemVer), as for `import`.
        #[arg(long)]
        version: Option<String>,
        /// Model the import would record, as for `import`.
        #[arg(long)]
        model: Option<String>,
        /// Stepping stone the import would record, as for `import`.
        #[arg(long)]
        min_version: Option<String>,
        /// Ask the running engine instead: its library too (already imported, same version with
        /// other bytes) and its OTA slot limits.
        #[arg(long)]
        check: bool,
        /// OTA slot limit in bytes when checking offline (the engine's own with --check).
        #[arg(long, default_value_t = flotilla_core::config::DEFAULT_MAX_IMAGE_SIZE, conflicts_with = "check")]
        max_image_size: u64,
        /// Print the report as JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Import a firmware file into the engine's library (uploaded to the admin API).
    Import {
        file: PathBuf,
        /// Version to record (SemVer); required when the image has none or a non-SemVer one.
        #[arg(long)]
        version: Option<String>,
        /// Device model the firmware is for (default: the image's project name).
        #[arg(long)]
        model: Option<String>,
        /// Release channel.
        #[arg(long, value_enum)]
        channel: Option<ReleaseChannel>,
        /// Free-text notes.
        #[arg(long)]
        notes: Option<String>,
        /// Devices must run at least this version first (stepping stone).
        #[arg(long)]
        min_version: Option<String>,
        /// Serve without per-job download tokens.
        #[arg(long)]
        public: bool,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List imported firmware, newest first.
    List {
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show one firmware (by id, sha256 prefix or version).
    Show {
        /// Firmware: id, sha256 prefix (6+ hex digits) or version.
        reference: String,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Change what was said about a firmware: channel, notes, public, stepping stone, archived,
    /// blocked.
    Edit {
        /// Firmware: id, sha256 prefix (6+ hex digits) or version.
        reference: String,
        /// Release channel.
        #[arg(long, value_enum)]
        channel: Option<ReleaseChannel>,
        /// Free-text notes (replace the old ones).
        #[arg(long)]
        notes: Option<String>,
        /// Serve without per-job download tokens.
        #[arg(long, conflicts_with = "private")]
        public: bool,
        /// Serve only with per-job download tokens.
        #[arg(long)]
        private: bool,
        /// Devices must run at least this version first (stepping stone).
        #[arg(long, conflicts_with = "no_min_version")]
        min_version: Option<String>,
        /// Remove the stepping stone.
        #[arg(long)]
        no_min_version: bool,
        /// Hide it from the library and from new rollouts (kept for the reports that use it).
        #[arg(long, conflicts_with = "unarchive")]
        archive: bool,
        /// Show it in the library and offer it to new rollouts again.
        #[arg(long)]
        unarchive: bool,
        /// Never offer or serve it again until unblocked.
        #[arg(long, conflicts_with = "unblock")]
        block: bool,
        /// Offer and serve it again.
        #[arg(long)]
        unblock: bool,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Block a firmware: it is never offered or served again until unblocked.
    Block {
        /// Firmware: id, sha256 prefix (6+ hex digits) or version.
        reference: String,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Unblock a firmware.
    Unblock {
        /// Firmware: id, sha256 prefix (6+ hex digits) or version.
        reference: String,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a firmware no rollout uses (and its file).
    Delete {
        /// Firmware: id, sha256 prefix (6+ hex digits) or version.
        reference: String,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// What to roll out: per model, the newest firmware on the devices' channel, how many devices
    /// run something older, and the command that updates them.
    Suggest {
        /// Only these devices (a target expression, e.g. `label:line-3`); default all.
        #[arg(long)]
        target: Option<String>,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// The channel a firmware is released on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReleaseChannel {
    Stable,
    Beta,
}

impl From<ReleaseChannel> for Channel {
    fn from(c: ReleaseChannel) -> Channel {
        match c {
            ReleaseChannel::Stable => Channel::Stable,
            ReleaseChannel::Beta => Channel::Beta,
        }
    }
}

/// A `true`/`false` from a pair of opposite flags; `None` when neither is given.
fn either(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

pub async fn run(cmd: FirmwareCmd) -> CliResult {
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
            let channel = channel.map(|c| Channel::from(c).as_str().to_owned());
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
                outln!("Imported firmware {} ({} {} for {}).", f.id, f.model, f.version, f.chip);
            } else if res.gzip_added {
                outln!(
                    "Already imported as firmware {} ({} {}); its .bin.gz form was added.",
                    f.id,
                    f.model,
                    f.version
                );
            } else {
                outln!("Already imported as firmware {} ({} {}); nothing changed.", f.id, f.model, f.version);
            }
            print_firmware(f);
            Ok(())
        }
        FirmwareCmd::List { json, api } => {
            let headers = ["ID", "MODEL", "VERSION", "CHIP", "CHANNEL", "SIZE", "SHA256", "IMPORTED", "FLAGS"];
            let empty = "No firmware imported yet. Import one with `flotilla firmware import FILE`.";
            print_list(&api, "/api/v1/firmware", json, empty, &headers, |f: &Firmware| {
                vec![
                    f.id.to_string(),
                    f.model.clone(),
                    f.version.clone(),
                    f.chip.to_string(),
                    f.channel.as_str().into(),
                    size(f.size),
                    f.sha256.chars().take(12).collect(),
                    f.created_at.clone(),
                    flags(f),
                ]
            })
            .await
        }
        FirmwareCmd::Show { reference, json, api } => {
            let f: Firmware = Api::resolve(&api)?.get(&format!("/api/v1/firmware/{}", encode(&reference))).await?;
            if json {
                return print_json(&f);
            }
            print_firmware(&f);
            Ok(())
        }
        FirmwareCmd::Edit {
            reference,
            channel,
            notes,
            public,
            private,
            min_version,
            no_min_version,
            archive,
            unarchive,
            block,
            unblock,
            json,
            api,
        } => {
            let patch = FirmwarePatch {
                blocked: either(block, unblock),
                public: either(public, private),
                channel: channel.map(Channel::from),
                notes,
                archived: either(archive, unarchive),
                // The API removes the stepping stone on "".
                min_version: if no_min_version { Some(String::new()) } else { min_version },
            };
            if patch == FirmwarePatch::default() {
                return Err(CliError::refused(
                    "nothing to change: give --channel, --notes, --public/--private, --min-version/--no-min-version, \
                     --archive/--unarchive or --block/--unblock",
                ));
            }
            let f = patch_firmware(&api, &reference, &patch).await?;
            if json {
                return print_json(&f);
            }
            outln!("Changed firmware {} ({} {}).", f.id, f.model, f.version);
            print_firmware(&f);
            Ok(())
        }
        FirmwareCmd::Block { reference, json, api } => block(&api, &reference, true, json).await,
        FirmwareCmd::Unblock { reference, json, api } => block(&api, &reference, false, json).await,
        FirmwareCmd::Delete { reference, json, api } => {
            let api = Api::resolve(&api)?;
            let f: Firmware =
                api.send(api.request(Method::DELETE, &format!("/api/v1/firmware/{}", encode(&reference)))).await?;
            if json {
                return print_json(&f);
            }
            outln!("Deleted firmware {} ({} {}).", f.id, f.model, f.version);
            Ok(())
        }
        FirmwareCmd::Suggest { target, json, api } => {
            let api = Api::resolve(&api)?;
            let list: Vec<FirmwareSuggestion> =
                api.get(&with_query("/api/v1/firmware/suggestions", &[("target", target)])).await?;
            if json {
                return print_json(&list);
            }
            print_suggestions(&list);
            Ok(())
        }
    }
}

async fn patch_firmware(api: &ApiArgs, reference: &str, patch: &FirmwarePatch) -> CliResult<Firmware> {
    let api = Api::resolve(api)?;
    api.send(api.request(Method::PATCH, &format!("/api/v1/firmware/{}", encode(reference))).json(patch)).await
}

async fn block(api: &ApiArgs, reference: &str, blocked: bool, json: bool) -> CliResult {
    let patch = FirmwarePatch { blocked: Some(blocked), ..FirmwarePatch::default() };
    let f = patch_firmware(api, reference, &patch).await?;
    if json {
        return print_json(&f);
    }
    outln!("Firmware {} ({} {}) is {}.", f.id, f.model, f.version, if f.blocked { "blocked" } else { "unblocked" });
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
                outln!("{body}");
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

/// `blocked,public,archived`: the flags that are set.
fn flags(f: &Firmware) -> String {
    let set = [(f.blocked, "blocked"), (f.public, "public"), (f.archived, "archived")];
    set.iter().filter(|(on, _)| *on).map(|(_, name)| *name).collect::<Vec<_>>().join(",")
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
        ("secure_version", opt(f.secure_version)),
        ("min_version", opt(f.min_version.as_deref())),
        ("blocked", f.blocked.to_string()),
        ("public", f.public.to_string()),
        ("archived", f.archived.to_string()),
        ("gzip_form", gzip_form(&f.image)),
        ("signed_by", f.manifest.key_id.clone()),
        ("imported", f.created_at.clone()),
        ("notes", opt(f.notes.as_deref())),
    ]);
}

fn print_suggestions(list: &[FirmwareSuggestion]) {
    if list.is_empty() {
        outln!(
            "Nothing to roll out: no device runs a version older than the newest firmware of its model on its channel."
        );
        return;
    }
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            outln!();
        }
        outln!(
            "{}: {} ({}, firmware {}) for {} outdated device{}, {} online",
            s.model,
            s.firmware_version,
            s.channel.as_str(),
            s.firmware_id,
            s.outdated,
            if s.outdated == 1 { "" } else { "s" },
            s.online
        );
        outln!("  {}", rollout_command(s));
    }
}

/// The command that rolls a suggestion out, ready to paste into a POSIX shell.
fn rollout_command(s: &FirmwareSuggestion) -> String {
    format!("flotilla rollout create --firmware {} --target {} --start", s.firmware_id, shell_quote(&s.target))
}

/// `text` in single quotes for a POSIX shell (a `'` inside becomes `'\''`).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn fmt_enum<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suggestion_becomes_a_command_a_shell_takes_as_is() {
        let s = FirmwareSuggestion {
            model: "pump".into(),
            channel: Channel::Beta,
            device_channel: Some(Channel::Beta),
            firmware_id: 7,
            firmware_version: "2.1.0".into(),
            outdated: 3,
            online: 2,
            target: "label:line-3 and model:pump and channel:beta and outdated".into(),
        };
        assert_eq!(
            rollout_command(&s),
            "flotilla rollout create --firmware 7 --target 'label:line-3 and model:pump and channel:beta and outdated' --start"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn opposite_flags_give_one_answer_or_none() {
        assert_eq!(either(true, false), Some(true));
        assert_eq!(either(false, true), Some(false));
        assert_eq!(either(false, false), None);
    }
}
