//! Planning a rollout: which devices can take the firmware (and why not), and which wave each
//! device is in. Plain functions over data; the scheduler persists what they decide.

use std::cmp::Ordering;

use flotilla_proto::rollout::{Threshold, WaveSize};
use flotilla_proto::{Channel, Family, Firmware};
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};

/// Compares two versions as SemVer (a leading `v` is allowed); `None` when either is not SemVer.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    let parse = |s: &str| semver::Version::parse(s.trim().strip_prefix('v').unwrap_or(s.trim())).ok();
    Some(parse(a)?.cmp(&parse(b)?))
}

/// True when `version` is the same release as `target` (SemVer-equal, or the same text).
pub fn same_version(version: &str, target: &str) -> bool {
    compare_versions(version, target).map(|o| o == Ordering::Equal).unwrap_or(version.trim() == target.trim())
}

/// What is known of a device when a rollout is planned.
#[derive(Debug, Clone, Copy)]
pub struct DeviceFacts<'a> {
    pub family: Family,
    pub model: Option<&'a str>,
    pub chip: Option<&'a str>,
    pub version: Option<&'a str>,
    /// The anti-rollback version the device reports.
    pub secure_version: Option<u32>,
    /// The channel the device follows.
    pub channel: Channel,
    /// Id of another unfinished rollout this device is part of.
    pub busy_in: Option<i64>,
}

/// Checks that `fw` can go onto the device; `Err(reason)` means the device is skipped.
/// `slot_limit` is the OTA slot size for the device's model.
pub fn check_device(fw: &Firmware, d: &DeviceFacts<'_>, allow_downgrade: bool, slot_limit: u64) -> Result<(), String> {
    if let Some(other) = d.busy_in {
        return Err(format!("already in unfinished rollout {other}"));
    }
    if !crate::protocols::can_update(d.family) {
        return Err(format!("no update adapter for family {} yet", d.family.as_str()));
    }
    match (d.chip, d.model) {
        (Some(chip), _) if !chip_matches(chip, fw.chip.as_str()) => {
            return Err(format!("chip {chip} does not match the firmware's {}", fw.chip));
        }
        (None, None) => return Err("chip and model unknown: cannot prove the firmware fits".into()),
        _ => {}
    }
    if let Some(model) = d.model
        && model != fw.model
    {
        return Err(format!("model {model} does not match the firmware's {}", fw.model));
    }
    if fw.image.image_size > slot_limit {
        return Err(format!("image is {} bytes, larger than the {slot_limit}-byte OTA slot", fw.image.image_size));
    }
    let Some(version) = d.version else {
        return Err("running version unknown".into());
    };
    match compare_versions(version, &fw.version) {
        Some(Ordering::Equal) => return Err(format!("already on {}", fw.version)),
        Some(Ordering::Greater) if !allow_downgrade => {
            return Err(format!("would downgrade {version} → {} (allow it explicitly)", fw.version));
        }
        None if !allow_downgrade => {
            return Err(format!("running version {version:?} is not SemVer; cannot rule out a downgrade"));
        }
        _ => {}
    }
    if let Some(min) = &fw.min_version
        && compare_versions(version, min) == Some(Ordering::Less)
    {
        return Err(format!("runs {version}, needs at least {min} first (stepping stone)"));
    }
    if let Some(device_sv) = d.secure_version {
        let image_sv = fw.secure_version.unwrap_or(0);
        if image_sv < device_sv {
            return Err(format!(
                "the image's secure_version {image_sv} is below the device's {device_sv}: ESP-IDF anti-rollback \
                 would refuse it"
            ));
        }
    }
    if !d.channel.accepts(fw.channel) {
        return Err(format!(
            "follows the {} channel; firmware {} is on {}",
            d.channel.as_str(),
            fw.version,
            fw.channel.as_str()
        ));
    }
    Ok(())
}

fn chip_matches(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_ascii_lowercase();
    norm(a) == norm(b)
}

/// Parses `1,10%,50%,100%`.
pub fn parse_waves(s: &str) -> Result<Vec<WaveSize>> {
    let waves: Vec<WaveSize> = s
        .split(',')
        .map(|w| {
            let w = w.trim();
            match w.strip_suffix('%') {
                Some(p) => p
                    .parse::<f64>()
                    .ok()
                    .filter(|p| *p > 0.0 && *p <= 100.0)
                    .map(WaveSize::Percent)
                    .ok_or_else(|| CoreError::BadRequest(format!("wave {w:?}: a percentage is 0 < p ≤ 100"))),
                None => w.parse::<u32>().ok().filter(|n| *n > 0).map(WaveSize::Count).ok_or_else(|| {
                    CoreError::BadRequest(format!("wave {w:?}: a count or a percentage, e.g. 1,10%,50%,100%"))
                }),
            }
        })
        .collect::<Result<_>>()?;
    if waves.is_empty() {
        return Err(CoreError::BadRequest("at least one wave".into()));
    }
    Ok(waves)
}

/// Parses a failure threshold: `3` (devices) or `10%` (of the wave).
pub fn parse_threshold(s: &str) -> Result<Threshold> {
    let s = s.trim();
    let bad = || CoreError::BadRequest(format!("threshold {s:?}: a count (3) or a percentage (10%)"));
    match s.strip_suffix('%') {
        Some(p) => p.parse::<f64>().ok().filter(|p| (0.0..=100.0).contains(p)).map(Threshold::Percent).ok_or_else(bad),
        None => s.parse::<u32>().map(Threshold::Count).map_err(|_| bad()),
    }
}

/// Cumulative device counts at the end of each wave for `n` devices. The last entry is always
/// `n` (a final 100 % wave is implied), entries never shrink, and empty waves are dropped.
pub fn wave_ends(waves: &[WaveSize], n: usize) -> Vec<usize> {
    let mut ends: Vec<usize> = Vec::new();
    for w in waves {
        let cum = match *w {
            WaveSize::Count(c) => c as usize,
            WaveSize::Percent(p) => ((p / 100.0) * n as f64).ceil() as usize,
        }
        .min(n);
        if cum > 0 && ends.last().is_none_or(|last| cum > *last) {
            ends.push(cum);
        }
    }
    if ends.last() != Some(&n) && n > 0 {
        ends.push(n);
    }
    ends
}

/// The wave of each device: devices are ranked by SHA-256(seed ‖ mac), so the order is random
/// but stable — adding devices to a target never moves the others relative to each other.
pub fn assign_waves(seed: &str, macs: &[&str], waves: &[WaveSize]) -> Vec<u32> {
    let mut ranked: Vec<(usize, [u8; 32])> = macs
        .iter()
        .enumerate()
        .map(|(i, mac)| {
            let mut h = Sha256::new();
            h.update(seed.as_bytes());
            h.update(b"\0");
            h.update(mac.as_bytes());
            (i, h.finalize().into())
        })
        .collect();
    ranked.sort_by_key(|r| r.1);
    let ends = wave_ends(waves, macs.len());
    let mut out = vec![0u32; macs.len()];
    let mut wave = 0usize;
    for (rank, (i, _)) in ranked.iter().enumerate() {
        while ends.get(wave).is_some_and(|end| rank >= *end) {
            wave += 1;
        }
        out[*i] = wave as u32;
    }
    out
}

/// Has a wave of `size` devices with `failures` failed devices crossed the threshold?
pub fn threshold_exceeded(th: Threshold, failures: u32, size: u32) -> bool {
    match th {
        Threshold::Count(n) => failures > n,
        Threshold::Percent(p) => size > 0 && f64::from(failures) * 100.0 / f64::from(size) > p,
    }
}

/// Did enough of a finished wave succeed?
pub fn gate_passed(success_gate: f64, succeeded: u32, considered: u32) -> bool {
    considered == 0 || f64::from(succeeded) * 100.0 / f64::from(considered) + 1e-9 >= success_gate
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wave_ends_are_cumulative_and_cover_everyone() {
        let w = parse_waves("1,10%,50%,100%").unwrap();
        assert_eq!(wave_ends(&w, 200), vec![1, 20, 100, 200]);
        assert_eq!(wave_ends(&w, 1), vec![1]);
        assert_eq!(wave_ends(&w, 3), vec![1, 2, 3]);
        assert_eq!(wave_ends(&parse_waves("5,10").unwrap(), 100), vec![5, 10, 100]);
        assert!(wave_ends(&w, 0).is_empty());
    }

    #[test]
    fn waves_are_stable_when_the_target_grows() {
        let waves = parse_waves("1,10%,50%,100%").unwrap();
        let macs: Vec<String> = (0..200).map(|i| format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256)).collect();
        let refs: Vec<&str> = macs.iter().map(String::as_str).collect();
        let a = assign_waves("seed", &refs, &waves);
        assert_eq!(a.iter().filter(|w| **w == 0).count(), 1);
        assert_eq!(a.iter().filter(|w| **w == 1).count(), 19);
        assert_eq!(a.iter().filter(|w| **w == 2).count(), 80);
        assert_eq!(a.iter().filter(|w| **w == 3).count(), 100);
        // Relative order by hash is unchanged with more devices: a device ranked before another stays before it.
        let more: Vec<String> = (0..400).map(|i| format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256)).collect();
        let more_refs: Vec<&str> = more.iter().map(String::as_str).collect();
        let b = assign_waves("seed", &more_refs, &waves);
        let sizes = |w: &[u32]| (0..4u32).map(|n| w.iter().filter(|x| **x == n).count()).collect::<Vec<_>>();
        assert_eq!(sizes(&b), [1, 39, 160, 200], "the larger target is split into waves too");
        for i in 0..200 {
            for j in 0..200 {
                if a[i] < a[j] {
                    assert!(b[i] <= b[j]);
                }
            }
        }
        assert_ne!(assign_waves("other", &refs, &waves), a, "the seed changes the order");
    }

    #[test]
    fn thresholds_and_gates() {
        assert!(!threshold_exceeded(Threshold::Percent(10.0), 1, 19));
        assert!(threshold_exceeded(Threshold::Percent(10.0), 2, 19));
        assert!(threshold_exceeded(Threshold::Percent(10.0), 1, 1));
        assert!(!threshold_exceeded(Threshold::Count(2), 2, 100));
        assert!(threshold_exceeded(Threshold::Count(2), 3, 100));
        assert!(gate_passed(90.0, 18, 20));
        assert!(!gate_passed(90.0, 17, 20));
        assert_eq!(parse_threshold("10%").unwrap(), Threshold::Percent(10.0));
        assert_eq!(parse_threshold("3").unwrap(), Threshold::Count(3));
        assert!(parse_threshold("lots").is_err());
        assert!(parse_waves("0").is_err() && parse_waves("150%").is_err() && parse_waves("x").is_err());
    }

    #[test]
    fn versions_compare_as_semver() {
        assert_eq!(compare_versions("1.10.0", "1.9.0"), Some(Ordering::Greater));
        assert_eq!(compare_versions("v2.0.0", "2.0.0"), Some(Ordering::Equal));
        assert_eq!(compare_versions("2.0.0-rc.1", "2.0.0"), Some(Ordering::Less));
        assert_eq!(compare_versions("tasmota", "2.0.0"), None);
        assert!(same_version("v1.2.3", "1.2.3"));
    }
}
