//! Pull devices against the fake engine.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use flotilla_proto::firmware::Chip;
use flotilla_proto::native::DeviceOtaState;
use flotilla_sim::{DeviceKind, DeviceSnapshot, DeviceState, Failures, Fleet, FleetConfig};

use crate::engine::{FakeEngine, Signing};
use crate::{fast_fleet, image, wait_for};

const DEV0: &str = "sim-native-pull-0";
const DEV1: &str = "sim-native-pull-1";
const DEV2: &str = "sim-native-pull-2";

fn states(engine: &FakeEngine, device: &str) -> Vec<DeviceOtaState> {
    engine.reports(device).into_iter().map(|(_, r)| r.state).collect()
}

/// Position in the engine's log of the device's first report in `state`.
fn report_at(engine: &FakeEngine, device: &str, state: DeviceOtaState) -> Option<usize> {
    engine.reports(device).into_iter().find(|(_, r)| r.state == state).map(|(i, _)| i)
}

#[tokio::test]
async fn pull_device_installs_the_version_in_the_bytes_and_ignores_reoffers() {
    let engine = FakeEngine::start().await;
    let sha = engine.add_firmware(image("2.0.0", 64 * 1024));
    let fleet = Fleet::start(FleetConfig { address_block: 21, ..fast_fleet(&engine.url, DeviceKind::NativePull, 1) })
        .await
        .unwrap();
    let first = wait_for("a first check-in", || engine.checkins(DEV0).first().cloned()).await;
    assert_eq!(first.1, "1.0.0");
    assert_eq!(first.2, IpAddr::V4(Ipv4Addr::new(127, 21, 0, 1)), "requests leave from the device's own address");

    // The offer (and its signed manifest) claims 9.9.9; the image says 2.0.0. The bytes win.
    engine.offer_to(DEV0, engine.make_offer("job-1", &sha, "9.9.9", Chip::Esp32, Signing::Good));
    wait_for("a check-in on 2.0.0", || engine.checkins(DEV0).into_iter().find(|c| c.1 == "2.0.0")).await;
    let s = states(&engine, DEV0);
    assert_eq!(s.first(), Some(&DeviceOtaState::Accepted));
    assert_eq!(&s[s.len() - 2..], &[DeviceOtaState::Installing, DeviceOtaState::Rebooting]);
    let progress: Vec<u8> = engine
        .reports(DEV0)
        .into_iter()
        .filter(|(_, r)| r.state == DeviceOtaState::Downloading)
        .map(|(_, r)| r.progress.unwrap())
        .collect();
    assert_eq!(progress.first(), Some(&0));
    assert_eq!(progress.last(), Some(&100));
    assert!(progress.windows(2).all(|w| w[1] / 10 > w[0] / 10), "one report per 10 %: {progress:?}");
    assert!(engine.reports(DEV0).iter().all(|(_, r)| r.job == "job-1" && r.mac.is_some()));

    // The engine keeps offering job-1; the device must ignore it, and count it.
    let d = wait_for("a duplicate offer", || fleet.device(DEV0).filter(|d| d.duplicate_offers >= 2)).await;
    assert_eq!((d.version.as_str(), d.commands_received, d.jobs_seen.clone()), ("2.0.0", 1, vec!["job-1".to_string()]));
    assert_eq!(engine.downloads().len(), 1, "downloaded once");
    assert_eq!(states(&engine, DEV0).len(), s.len(), "no report after the re-offers");

    // Its own endpoint answers on its own address.
    let url = format!("http://{}:{}/", d.ip, d.port);
    let seen: DeviceSnapshot = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!((seen.id.as_str(), seen.version.as_str(), seen.state), (DEV0, "2.0.0", DeviceState::Idle));
    fleet.stop().await;
}

#[tokio::test]
async fn dropped_download_resumes_with_range() {
    let engine = FakeEngine::start().await;
    let sha = engine.add_firmware(image("2.0.0", 64 * 1024));
    let drop = Failures { drop: true, ..Failures::none() };
    // The site key given, as `--site-key` does, instead of fetched.
    let key = hex::decode(engine.public_key().public_key_hex).unwrap().try_into().unwrap();
    let config = FleetConfig {
        failures: vec![(DEV0.into(), drop)],
        site_key: Some(key),
        ..fast_fleet(&engine.url, DeviceKind::NativePull, 1)
    };
    let fleet = Fleet::start(config).await.unwrap();
    engine.offer_to(DEV0, engine.make_offer("job-1", &sha, "2.0.0", Chip::Esp32, Signing::Good));
    wait_for("a check-in on 2.0.0", || engine.checkins(DEV0).into_iter().find(|c| c.1 == "2.0.0")).await;
    assert_eq!(engine.downloads(), vec![(200, None), (206, Some(format!("bytes={}-", 32 * 1024)))]);
    assert_eq!(fleet.device(DEV0).unwrap().downloads_resumed, 1);
    fleet.stop().await;
}

#[tokio::test]
async fn corrupted_download_fails_with_sha256_mismatch_and_keeps_the_old_version() {
    let engine = FakeEngine::start().await;
    let sha = engine.add_firmware(image("2.0.0", 32 * 1024));
    let fleet = Fleet::start(fast_fleet(&engine.url, DeviceKind::NativePull, 1)).await.unwrap();
    fleet.set_failures(DEV0, Failures { corrupt: true, ..Failures::none() }).unwrap();
    engine.offer_to(DEV0, engine.make_offer("job-1", &sha, "2.0.0", Chip::Esp32, Signing::Good));
    let failed = wait_for("a failed report", || report_at(&engine, DEV0, DeviceOtaState::Failed)).await;
    let (_, report) = engine.reports(DEV0).into_iter().find(|(i, _)| *i == failed).unwrap();
    assert!(report.error.as_deref().unwrap().starts_with("sha256 mismatch"), "{report:?}");
    assert!(!states(&engine, DEV0).contains(&DeviceOtaState::Installing));
    let after =
        wait_for("a check-in after the failure", || engine.checkins(DEV0).into_iter().find(|c| c.0 > failed)).await;
    assert_eq!(after.1, "1.0.0");
    let d = fleet.device(DEV0).unwrap();
    assert_eq!((d.version.as_str(), d.reboots), ("1.0.0", 0));
    assert!(d.last_error.unwrap().starts_with("sha256 mismatch"));
    fleet.stop().await;
}

#[tokio::test]
async fn failed_boot_comes_back_on_the_old_version() {
    let engine = FakeEngine::start().await;
    let sha = engine.add_firmware(image("2.0.0", 32 * 1024));
    let boot = Failures { boot: true, ..Failures::none() };
    let config =
        FleetConfig { failures: vec![(DEV0.into(), boot)], ..fast_fleet(&engine.url, DeviceKind::NativePull, 1) };
    let fleet = Fleet::start(config).await.unwrap();
    engine.offer_to(DEV0, engine.make_offer("job-1", &sha, "2.0.0", Chip::Esp32, Signing::Good));
    let rebooting = wait_for("a rebooting report", || report_at(&engine, DEV0, DeviceOtaState::Rebooting)).await;
    let back =
        wait_for("a check-in after the reboot", || engine.checkins(DEV0).into_iter().find(|c| c.0 > rebooting)).await;
    assert_eq!(back.1, "1.0.0", "rolled back");
    let d = fleet.device(DEV0).unwrap();
    assert_eq!((d.version.as_str(), d.reboots, d.state), ("1.0.0", 1, DeviceState::Idle));
    fleet.stop().await;
}

#[tokio::test]
async fn vanished_device_never_comes_back_until_repaired() {
    let engine = FakeEngine::start().await;
    let sha = engine.add_firmware(image("2.0.0", 32 * 1024));
    let vanish = Failures { vanish: true, ..Failures::none() };
    let config =
        FleetConfig { failures: vec![(DEV0.into(), vanish)], ..fast_fleet(&engine.url, DeviceKind::NativePull, 2) };
    let fleet = Fleet::start(config).await.unwrap();
    let offer = engine.make_offer("job-1", &sha, "2.0.0", Chip::Esp32, Signing::Good);
    engine.offer_to(DEV0, offer.clone());
    engine.offer_to(DEV1, offer);
    let gone = wait_for("dev 0 rebooting", || report_at(&engine, DEV0, DeviceOtaState::Rebooting)).await;
    // The healthy twin, on the same timings, is the clock: once it has come back and checked in
    // three more times, dev 0 would have come back too.
    let twin = wait_for("dev 1 rebooting", || report_at(&engine, DEV1, DeviceOtaState::Rebooting)).await;
    wait_for("dev 1 back on 2.0.0, three check-ins", || {
        let back: Vec<_> = engine.checkins(DEV1).into_iter().filter(|c| c.0 > twin.max(gone)).collect();
        (back.len() >= 3 && back.iter().all(|c| c.1 == "2.0.0")).then_some(())
    })
    .await;
    assert!(engine.checkins(DEV0).iter().all(|c| c.0 < gone), "a vanished device never checks in");
    let d = fleet.device(DEV0).unwrap();
    assert_eq!(d.state, DeviceState::Vanished);
    let refused = reqwest::get(format!("http://{}:{}/", d.ip, d.port)).await;
    assert!(refused.is_err(), "its endpoint is down too");

    fleet.repair_all();
    let back = wait_for("dev 0 back after repair", || engine.checkins(DEV0).into_iter().find(|c| c.0 > gone)).await;
    assert_eq!(back.1, "1.0.0", "a repaired device comes back on its old version");
    fleet.stop().await;
}

#[tokio::test]
async fn bad_signature_wrong_chip_and_refusal_are_rejected_without_a_download() {
    let engine = FakeEngine::start().await;
    let sha = engine.add_firmware(image("2.0.0", 32 * 1024));
    let config = FleetConfig {
        failures: vec![(DEV2.into(), Failures { refuse: true, ..Failures::none() })],
        ..fast_fleet(&engine.url, DeviceKind::NativePull, 3)
    };
    let fleet = Fleet::start(config).await.unwrap();
    engine.offer_to(DEV0, engine.make_offer("job-sig", &sha, "2.0.0", Chip::Esp32, Signing::ForeignKey));
    engine.offer_to(DEV1, engine.make_offer("job-chip", &sha, "2.0.0", Chip::Esp32s3, Signing::Good));
    engine.offer_to(DEV2, engine.make_offer("job-refuse", &sha, "2.0.0", Chip::Esp32, Signing::Good));
    let error = |device: &str| {
        engine
            .reports(device)
            .into_iter()
            .find(|(_, r)| r.state == DeviceOtaState::Rejected)
            .map(|(_, r)| r.error.unwrap_or_default())
    };
    let sig = wait_for("dev 0 rejected", || error(DEV0)).await;
    let chip = wait_for("dev 1 rejected", || error(DEV1)).await;
    let refuse = wait_for("dev 2 rejected", || error(DEV2)).await;
    assert!(sig.contains("signature invalid") && sig.contains("device trusts"), "{sig}");
    assert!(chip.contains("firmware is for esp32s3"), "{chip}");
    assert!(refuse.contains("refuses"), "{refuse}");
    for d in [DEV0, DEV1, DEV2] {
        assert_eq!(states(&engine, d), vec![DeviceOtaState::Rejected], "{d} only rejects");
        wait_for("the re-offer to be ignored", || fleet.device(d).filter(|s| s.duplicate_offers >= 1)).await;
    }
    assert!(engine.downloads().is_empty());
    fleet.stop().await;
}

#[tokio::test]
async fn slow_device_download_is_throttled() {
    let engine = FakeEngine::start().await;
    let size = 24 * 1024;
    let sha = engine.add_firmware(image("2.0.0", size));
    let slow = Failures { slow_bps: Some(32 * 1024), ..Failures::none() };
    let config =
        FleetConfig { failures: vec![(DEV0.into(), slow)], ..fast_fleet(&engine.url, DeviceKind::NativePull, 1) };
    let fleet = Fleet::start(config).await.unwrap();
    engine.offer_to(DEV0, engine.make_offer("job-1", &sha, "2.0.0", Chip::Esp32, Signing::Good));
    wait_for("installing", || report_at(&engine, DEV0, DeviceOtaState::Installing)).await;
    let log = engine.log();
    let at = |state| {
        let i = report_at(&engine, DEV0, state).unwrap();
        log[i].at
    };
    let took = at(DeviceOtaState::Installing) - at(DeviceOtaState::Accepted);
    assert!(took >= Duration::from_millis(650), "24 KiB at 32 KiB/s took only {took:?}");
    fleet.stop().await;
}
