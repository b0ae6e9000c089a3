//! Target expressions: which devices a rollout is for.
//!
//! Grammar: `term (and term)*`, where a term is `all`, `online`, `outdated`, `label:X`,
//! `model:X`, `chip:X`, `family:X`, `channel:stable|beta` or `device:ID[,ID…]` (MAC in any
//! spelling, or device id). Terms may be negated with `not`. Plain functions over data; parsing
//! happens once, before any device is looked at.
//!
//! Terms are of two kinds: those that say *which* devices a rollout is about (labels, models,
//! chips, families, ids) and *conditions* on their state now (`online`, `outdated`, `channel:`).
//! A device in scope that fails a condition is "left out", and [`Target::left_out`] says which
//! condition, so a preview can list it instead of dropping it silently.

use flotilla_proto::device::normalize_mac;
use flotilla_proto::{Channel, Family};

use crate::error::{CoreError, Result};

/// One condition on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    All,
    Online,
    /// Runs a version below the rollout's firmware.
    Outdated,
    Label(String),
    Model(String),
    Chip(String),
    /// A family, and for Shelly perhaps a generation: `family:shelly-gen1` is Gen1 only,
    /// `family:shelly-gen2` the RPC generations (2 and later).
    Family(Family, Option<u8>),
    /// MACs (normalised) or device ids.
    Devices(Vec<String>),
    /// Follows this firmware channel.
    Channel(Channel),
    Not(Box<Term>),
}

impl Term {
    /// A condition on the device's state now, rather than a choice of devices.
    fn is_condition(&self) -> bool {
        match self {
            Term::Online | Term::Outdated | Term::Channel(_) => true,
            Term::Not(inner) => inner.is_condition(),
            _ => false,
        }
    }
}

/// A parsed target: every term must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub terms: Vec<Term>,
}

/// What a target is evaluated against, for one device.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub mac: &'a str,
    pub device_id: Option<&'a str>,
    pub online: bool,
    pub labels: &'a [String],
    pub model: Option<&'a str>,
    pub chip: Option<&'a str>,
    pub family: Family,
    pub generation: Option<u8>,
    /// The device's version is below the firmware's (false when unknown).
    pub outdated: bool,
    pub channel: Channel,
}

impl Target {
    /// Parses an expression; errors name the offending word.
    pub fn parse(expr: &str) -> Result<Target> {
        let bad = |msg: String| CoreError::BadRequest(format!("target {expr:?}: {msg}"));
        let words: Vec<&str> = expr.split_whitespace().collect();
        if words.is_empty() {
            return Err(bad("empty; use `all`, `label:X`, `model:X`, `chip:X`, `family:X`, `device:ID,…`, `outdated`, `online`, joined with `and`".into()));
        }
        let mut terms = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let mut negate = false;
            if words[i].eq_ignore_ascii_case("not") {
                negate = true;
                i += 1;
            }
            let Some(word) = words.get(i) else { return Err(bad("`not` needs a term after it".into())) };
            let term = parse_term(word).map_err(bad)?;
            terms.push(if negate { Term::Not(Box::new(term)) } else { term });
            i += 1;
            match words.get(i) {
                None => break,
                Some(w) if w.eq_ignore_ascii_case("and") => {
                    i += 1;
                    if i == words.len() {
                        return Err(bad("`and` needs a term after it".into()));
                    }
                }
                Some(w) => return Err(bad(format!("expected `and` before {w:?}"))),
            }
        }
        Ok(Target { terms })
    }

    /// True when every term holds for the device.
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        self.terms.iter().all(|t| term_matches(t, f))
    }

    /// For a device in the target's scope (every choice term holds) that a condition leaves out:
    /// the first condition it fails. `None` when it matches or is out of scope.
    pub fn left_out<'t>(&'t self, f: &Facts<'_>) -> Option<&'t Term> {
        if !self.terms.iter().filter(|t| !t.is_condition()).all(|t| term_matches(t, f)) {
            return None;
        }
        self.terms.iter().filter(|t| t.is_condition()).find(|t| !term_matches(t, f))
    }
}

fn parse_term(word: &str) -> std::result::Result<Term, String> {
    let lower = word.to_ascii_lowercase();
    match lower.as_str() {
        "all" => return Ok(Term::All),
        "online" => return Ok(Term::Online),
        "outdated" => return Ok(Term::Outdated),
        _ => {}
    }
    let Some((key, value)) = word.split_once(':') else {
        return Err(format!("unknown term {word:?}"));
    };
    if value.is_empty() {
        return Err(format!("{key}: needs a value"));
    }
    match key.to_ascii_lowercase().as_str() {
        "label" => Ok(Term::Label(value.to_owned())),
        "model" => Ok(Term::Model(value.to_owned())),
        "chip" => Ok(Term::Chip(value.to_ascii_lowercase())),
        "family" => Family::parse_with_generation(value).map(|(f, g)| Term::Family(f, g)).ok_or_else(|| {
            format!("unknown family {value:?}: native, tasmota, shelly, shelly-gen1, shelly-gen2, arduino or esphome")
        }),
        "channel" => {
            Channel::parse(value).map(Term::Channel).ok_or_else(|| format!("channel {value:?}: stable or beta"))
        }
        "device" | "devices" => Ok(Term::Devices(
            value
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| normalize_mac(s).unwrap_or_else(|| s.to_owned()))
                .collect(),
        )),
        other => Err(format!("unknown term {other:?}")),
    }
}

fn term_matches(t: &Term, f: &Facts<'_>) -> bool {
    match t {
        Term::All => true,
        Term::Online => f.online,
        Term::Outdated => f.outdated,
        Term::Label(l) => f.labels.iter().any(|x| x == l),
        Term::Model(m) => f.model == Some(m.as_str()),
        Term::Chip(c) => f.chip.map(|x| x.replace('-', "").eq_ignore_ascii_case(&c.replace('-', ""))).unwrap_or(false),
        Term::Family(fam, generation) => {
            f.family == *fam
                && match generation {
                    None => true,
                    Some(1) => f.generation == Some(1),
                    Some(_) => f.generation.is_some_and(|g| g >= 2),
                }
        }
        Term::Devices(ids) => ids.iter().any(|id| id == f.mac || Some(id.as_str()) == f.device_id),
        Term::Channel(c) => f.channel == *c,
        Term::Not(inner) => !term_matches(inner, f),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn facts<'a>(labels: &'a [String]) -> Facts<'a> {
        Facts {
            mac: "aa:bb:cc:00:11:22",
            device_id: Some("pump-1"),
            online: true,
            labels,
            model: Some("pump"),
            chip: Some("esp32"),
            family: Family::Native,
            generation: None,
            outdated: true,
            channel: Channel::Beta,
        }
    }

    #[test]
    fn shelly_generations_are_one_family_and_can_be_chosen_apart() {
        let labels = vec![];
        let shelly = |generation| Facts { family: Family::Shelly, generation, ..facts(&labels) };
        let matches = |expr: &str, f: &Facts<'_>| Target::parse(expr).unwrap().matches(f);
        for g in [Some(1), Some(2), Some(3), None] {
            assert!(matches("family:shelly", &shelly(g)), "{g:?}");
        }
        assert!(matches("family:shelly-gen1", &shelly(Some(1))));
        assert!(!matches("family:shelly-gen1", &shelly(Some(2))));
        assert!(!matches("family:shelly-gen1", &shelly(None)), "an unknown generation is not Gen1");
        assert!(matches("family:shelly-gen2", &shelly(Some(3))), "Gen3 speaks Gen2's RPC");
        assert!(!matches("family:shelly-gen2", &shelly(Some(1))));
        assert!(!matches("family:shelly", &facts(&labels)));
        assert!(matches("family:arduino-ota", &Facts { family: Family::Arduino, ..facts(&labels) }));
    }

    #[test]
    fn expressions_parse_and_match() {
        let labels = vec!["line-3".to_string()];
        let f = facts(&labels);
        for yes in [
            "all",
            "label:line-3",
            "model:pump and chip:ESP32 and family:native",
            "outdated and online",
            "device:AA-BB-CC-00-11-22",
            "device:other,pump-1",
            "not label:line-4",
            "all AND online",
            "channel:beta and model:pump",
        ] {
            assert!(Target::parse(yes).unwrap().matches(&f), "{yes}");
        }
        for no in [
            "label:line-4",
            "model:valve",
            "chip:esp32s3",
            "family:tasmota",
            "device:pump-2",
            "not online",
            "channel:stable",
        ] {
            assert!(!Target::parse(no).unwrap().matches(&f), "{no}");
        }
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expr, says) in [
            ("", "empty"),
            ("label:", "needs a value"),
            ("colour:red", "unknown term"),
            ("online outdated", "expected `and`"),
            ("online and", "needs a term"),
            ("family:zigbee", "unknown family"),
            ("not", "needs a term"),
            ("channel:alpha", "stable or beta"),
        ] {
            let err = Target::parse(expr).unwrap_err().to_string();
            assert!(err.contains(says), "{expr}: {err}");
        }
    }

    #[test]
    fn a_device_in_scope_that_fails_a_condition_is_left_out_with_the_condition() {
        let labels = vec!["line-3".to_string()];
        let mut f = facts(&labels);
        f.online = false;
        let t = Target::parse("model:pump and outdated and online").unwrap();
        assert!(!t.matches(&f));
        assert_eq!(t.left_out(&f), Some(&Term::Online));
        f.outdated = false;
        assert_eq!(t.left_out(&f), Some(&Term::Outdated), "the first condition it fails");
        f.model = Some("valve");
        assert_eq!(t.left_out(&f), None, "out of scope: not listed at all");
        let t = Target::parse("label:line-3 and not channel:beta").unwrap();
        assert!(matches!(t.left_out(&facts(&labels)), Some(Term::Not(_))));
    }
}
