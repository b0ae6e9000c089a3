//! Failure injection: the ways a simulated device misbehaves during an update, set per device
//! ([`Failures`]) or spread over the fleet by rate ([`FailureRates`], assigned from the seed).
//!
//! Each flag changes exactly one step of the update (see the field docs); a device with no flags
//! updates cleanly. Flags stay until cleared (`FleetHandle::repair_all` or `set_failures`).

use serde::{Deserialize, Serialize};

use crate::identity::Prng;

/// How one device misbehaves. Several flags may be set; the first step that fails decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    /// `drop`: the connection is dropped once in the middle of each download (at half the
    /// bytes); the device resumes with `Range: bytes=N-`.
    pub drop: bool,
    /// `hash` (or `corrupt`): a byte of the downloaded file is flipped before verification, so
    /// the SHA-256 check fails and the device reports `failed` "sha256 mismatch".
    pub corrupt: bool,
    /// `boot`: the new firmware fails to boot; the bootloader rolls back and the device comes
    /// back online reporting its previous version (and says nothing else about it).
    pub boot: bool,
    /// `vanish`: the device never comes back after the reboot (no check-in, no presence, its
    /// HTTP endpoint stays down) until repaired.
    pub vanish: bool,
    /// `slow`: downloads are throttled to this many bytes per second.
    pub slow_bps: Option<u64>,
    /// `refuse`: every offer is answered `rejected`.
    pub refuse: bool,
    /// `impostor`: the device never speaks for itself; once another (pull) device of the fleet
    /// has enrolled, it replays that device's id and MAC — without its secret — claiming the
    /// version that device is being updated to, and tries to report on its job. The engine must
    /// refuse every such request ([`crate::DeviceSnapshot::refused`] counts them).
    #[serde(default)]
    pub impostor: bool,
}

impl Failures {
    /// No failure: the device updates cleanly.
    pub fn none() -> Failures {
        Failures::default()
    }

    pub fn is_none(&self) -> bool {
        *self == Failures::default()
    }

    /// The names of the flags set, in [`FailureKind::ALL`] order.
    pub fn names(&self) -> Vec<&'static str> {
        FailureKind::ALL.into_iter().filter(|k| k.is_set(self)).map(FailureKind::as_str).collect()
    }
}

/// One kind of failure, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    Boot,
    Hash,
    Vanish,
    Drop,
    Slow,
    Refuse,
    Impostor,
}

impl FailureKind {
    /// Every kind, in the order rates are assigned.
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Boot,
        FailureKind::Hash,
        FailureKind::Vanish,
        FailureKind::Drop,
        FailureKind::Slow,
        FailureKind::Refuse,
        FailureKind::Impostor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Boot => "boot",
            FailureKind::Hash => "hash",
            FailureKind::Vanish => "vanish",
            FailureKind::Drop => "drop",
            FailureKind::Slow => "slow",
            FailureKind::Refuse => "refuse",
            FailureKind::Impostor => "impostor",
        }
    }

    /// Parses [`FailureKind::as_str`]; `corrupt` is another name for `hash`.
    pub fn parse(s: &str) -> Option<FailureKind> {
        match s {
            "corrupt" => Some(FailureKind::Hash),
            _ => FailureKind::ALL.into_iter().find(|k| k.as_str() == s),
        }
    }

    fn is_set(self, f: &Failures) -> bool {
        match self {
            FailureKind::Boot => f.boot,
            FailureKind::Hash => f.corrupt,
            FailureKind::Vanish => f.vanish,
            FailureKind::Drop => f.drop,
            FailureKind::Slow => f.slow_bps.is_some(),
            FailureKind::Refuse => f.refuse,
            FailureKind::Impostor => f.impostor,
        }
    }

    fn set(self, f: &mut Failures, slow_bps: u64) {
        match self {
            FailureKind::Boot => f.boot = true,
            FailureKind::Hash => f.corrupt = true,
            FailureKind::Vanish => f.vanish = true,
            FailureKind::Drop => f.drop = true,
            FailureKind::Slow => f.slow_bps = Some(slow_bps),
            FailureKind::Refuse => f.refuse = true,
            FailureKind::Impostor => f.impostor = true,
        }
    }
}

/// Share of the fleet (0.0–1.0) that gets each failure.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FailureRates {
    pub boot: f64,
    pub hash: f64,
    pub vanish: f64,
    pub drop: f64,
    pub slow: f64,
    pub refuse: f64,
    pub impostor: f64,
}

impl FailureRates {
    /// Parses `boot=5%,hash=2%,vanish=1%` (a bare number is a percentage too). Each kind at most
    /// once, each rate 0–100 %.
    pub fn parse(spec: &str) -> Result<FailureRates, String> {
        let mut rates = FailureRates::default();
        let mut seen = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) =
                part.split_once('=').ok_or_else(|| format!("failure `{part}` must be KIND=PERCENT, e.g. boot=5%"))?;
            let kind = FailureKind::parse(name.trim()).ok_or_else(|| {
                format!(
                    "unknown failure `{}` (known: boot, hash, corrupt, vanish, drop, slow, refuse, impostor)",
                    name.trim()
                )
            })?;
            if seen.contains(&kind) {
                return Err(format!("failure `{}` is given twice", kind.as_str()));
            }
            seen.push(kind);
            let number = value.trim().trim_end_matches('%').trim();
            let percent: f64 =
                number.parse().ok().filter(|p: &f64| p.is_finite() && (0.0..=100.0).contains(p)).ok_or_else(|| {
                    format!("rate of `{}` must be a percentage 0–100, got `{}`", kind.as_str(), value.trim())
                })?;
            *rates.slot(kind) = percent / 100.0;
        }
        Ok(rates)
    }

    fn slot(&mut self, kind: FailureKind) -> &mut f64 {
        match kind {
            FailureKind::Boot => &mut self.boot,
            FailureKind::Hash => &mut self.hash,
            FailureKind::Vanish => &mut self.vanish,
            FailureKind::Drop => &mut self.drop,
            FailureKind::Slow => &mut self.slow,
            FailureKind::Refuse => &mut self.refuse,
            FailureKind::Impostor => &mut self.impostor,
        }
    }

    fn rate(&self, kind: FailureKind) -> f64 {
        match kind {
            FailureKind::Boot => self.boot,
            FailureKind::Hash => self.hash,
            FailureKind::Vanish => self.vanish,
            FailureKind::Drop => self.drop,
            FailureKind::Slow => self.slow,
            FailureKind::Refuse => self.refuse,
            FailureKind::Impostor => self.impostor,
        }
    }

    /// Spreads the rates over `n` devices: kind by kind, `round(rate × n)` devices taken in turn
    /// from one seeded shuffle of the fleet, so the kinds do not overlap until the rates add up
    /// past 100 %. Same seed, same assignment.
    pub fn assign(&self, n: usize, seed: u64, slow_bps: u64) -> Vec<Failures> {
        let mut out = vec![Failures::none(); n];
        if n == 0 {
            return out;
        }
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Prng::new(seed ^ 0x6661_696c_7572_6573);
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut cursor = 0;
        for kind in FailureKind::ALL {
            let count = ((self.rate(kind) * n as f64).round() as usize).min(n);
            for _ in 0..count {
                kind.set(&mut out[order[cursor % n]], slow_bps);
                cursor += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rates_parse_and_refuse_nonsense() {
        let r = FailureRates::parse("boot=5%,hash=2%, vanish=1 ,corrupt=0%").unwrap_err();
        assert!(r.contains("twice"), "{r}");
        let r = FailureRates::parse("boot=5%,hash=2%, vanish=1").unwrap();
        assert_eq!((r.boot, r.hash, r.vanish, r.drop), (0.05, 0.02, 0.01, 0.0));
        assert!(FailureRates::parse("boom=5%").unwrap_err().contains("unknown failure `boom`"));
        assert!(FailureRates::parse("boot=150%").unwrap_err().contains("0–100"));
        assert!(FailureRates::parse("boot").unwrap_err().contains("KIND=PERCENT"));
        assert_eq!(FailureRates::parse("").unwrap(), FailureRates::default());
    }

    #[test]
    fn assignment_is_exact_disjoint_and_seeded() {
        let rates = FailureRates::parse("boot=5%,hash=2%,vanish=1%,slow=10%").unwrap();
        let a = rates.assign(100, 7, 1000);
        assert_eq!(a, rates.assign(100, 7, 1000));
        assert_ne!(a, rates.assign(100, 8, 1000));
        assert_eq!(a.iter().filter(|f| f.boot).count(), 5);
        assert_eq!(a.iter().filter(|f| f.corrupt).count(), 2);
        assert_eq!(a.iter().filter(|f| f.vanish).count(), 1);
        assert_eq!(a.iter().filter(|f| f.slow_bps == Some(1000)).count(), 10);
        assert!(a.iter().all(|f| f.names().len() <= 1), "kinds overlap below 100 %");
        assert_eq!(FailureRates::parse("refuse=100%").unwrap().assign(3, 1, 1).iter().filter(|f| f.refuse).count(), 3);
    }
}
