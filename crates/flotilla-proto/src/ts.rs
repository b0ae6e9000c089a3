//! TypeScript bindings for the UI (`ui/src/lib/api/generated/`), generated from these types by
//! ts-rs. The test below fails when the committed bindings differ from what the types say;
//! `FLOTILLA_BLESS=1 cargo test -p flotilla-proto typescript` writes them anew.
//!
//! 64-bit integers become `number`: the admin API's ids, sizes and timestamps stay far below
//! 2^53, and `JSON.parse` yields numbers, never bigints.

#![allow(clippy::expect_used)] // test-only: a failure here is the test failing

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ts_rs::{Config, TS};

use crate::api::{EngineStatus, ErrorBody, FleetMetrics, Health, PublicKey, RuntimeInfo, SettingsView, SiteSettings};
use crate::device::{
    ChannelRequest, CredentialInfo, CredentialRequest, Device, LabelChannel, LabelRequest, ProbeRequest, ProbeResult,
    ScanRequest, ScanResult,
};
use crate::event::{Event, EventPage};
use crate::firmware::{DownloadLink, DownloadLinkRequest, Firmware, FirmwarePatch, ImageInfo, ImportOptions};
use crate::firmware::{ImportPathRequest, ImportResponse, InspectReport, SignedManifest};
use crate::rollout::{
    CreateRollout, DeviceHistory, FirmwareSuggestion, Rollout, RolloutDetail, RolloutPreview, RolloutProgress,
};

fn generated_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/lib/api/generated")
}

/// Every binding, by file name: the API's root types and all they refer to.
fn render() -> BTreeMap<String, String> {
    let out = std::env::temp_dir().join(format!("flotilla-ts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let cfg = Config::new().with_large_int("number").with_out_dir(&out);
    macro_rules! export {
        ($($t:ty),* $(,)?) => { $( <$t as TS>::export_all(&cfg).expect(stringify!($t)); )* };
    }
    export!(
        EngineStatus,
        SettingsView,
        SiteSettings,
        ErrorBody,
        Health,
        PublicKey,
        RuntimeInfo,
        Device,
        LabelRequest,
        Event,
        EventPage,
        DownloadLink,
        DownloadLinkRequest,
        Firmware,
        FirmwarePatch,
        ImageInfo,
        ImportOptions,
        ImportPathRequest,
        ImportResponse,
        InspectReport,
        SignedManifest,
        CreateRollout,
        Rollout,
        RolloutDetail,
        RolloutPreview,
        RolloutProgress,
        DeviceHistory,
        FirmwareSuggestion,
        LabelChannel,
        ChannelRequest,
        ProbeRequest,
        ProbeResult,
        ScanRequest,
        ScanResult,
        CredentialInfo,
        CredentialRequest,
        FleetMetrics,
    );
    let files = read_dir(&out);
    let _ = std::fs::remove_dir_all(&out);
    files
}

/// Every `.ts` file under `dir`, by path relative to it (`serde_json/JsonValue.ts`).
fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, files);
            } else if path.extension().is_some_and(|x| x == "ts") {
                let rel = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
                files.insert(rel, std::fs::read_to_string(&path).expect("read binding"));
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

#[test]
fn typescript_bindings_are_current() {
    let want = render();
    assert!(want.len() > 20, "expected the API's types, got {:?}", want.keys());
    let dir = generated_dir();
    if std::env::var_os("FLOTILLA_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create generated dir");
        for (name, text) in &want {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create generated dir");
            }
            std::fs::write(path, text).expect("write binding");
        }
        let index: String =
            want.keys().map(|n| format!("export type * from \"./{}\";\n", n.trim_end_matches(".ts"))).collect();
        std::fs::write(dir.join("index.ts"), index).expect("write index");
        return;
    }
    let mut have = read_dir(&dir);
    have.remove("index.ts");
    let stale: Vec<&String> = want
        .keys()
        .filter(|k| have.get(*k) != want.get(*k))
        .chain(have.keys().filter(|k| !want.contains_key(*k)))
        .collect();
    assert!(
        stale.is_empty(),
        "ui/src/lib/api/generated is stale ({stale:?}); run FLOTILLA_BLESS=1 cargo test -p flotilla-proto typescript"
    );
}
