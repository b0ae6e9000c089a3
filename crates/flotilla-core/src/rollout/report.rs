//! The per-rollout report handed over at the end of a job on site: one row per device with its
//! versions before and after, every state with its time, the error if any, and what a success
//! rests on (`evidence`) and whether the device proved who it is (`authenticated`).

use flotilla_proto::rollout::{JobState, RolloutDetail};

/// CSV columns, in order.
pub const CSV_COLUMNS: [&str; 18] = [
    "mac",
    "device_id",
    "wave",
    "state",
    "from_version",
    "to_version",
    "target_version",
    "attempts",
    "error",
    "queued_at",
    "commanded_at",
    "downloading_at",
    "installing_at",
    "rebooting_at",
    "verifying_at",
    "finished_at",
    "evidence",
    "authenticated",
];

/// A failure reason with its device-specific parts (versions, numbers, addresses) blanked, so
/// the same failure on many devices groups as one: `came back on 1.0.0, not 2.0.0: …` and
/// `came back on 1.1.0, not 2.0.0: …` both read `came back on …, not …: …`.
pub fn reason_key(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    for (i, word) in reason.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let lead = word.len() - word.trim_start_matches(['(', '[', '"']).len();
        let core_end = word.trim_end_matches([',', '.', ':', ';', ')', ']', '"']).len().max(lead);
        let core = &word[lead..core_end];
        if core.chars().any(|c| c.is_ascii_digit()) {
            out.push_str(&word[..lead]);
            out.push('…');
            out.push_str(&word[core_end..]);
        } else {
            out.push_str(word);
        }
    }
    out
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// The report as CSV (RFC 4180, header row first). Times are RFC 3339 UTC of the last time the
/// job entered each state.
pub fn csv(detail: &RolloutDetail) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    let target = &detail.rollout.firmware_version;
    for j in &detail.jobs {
        let at = |s: JobState| j.history.iter().rev().find(|t| t.state == s).map(|t| t.at.clone()).unwrap_or_default();
        let finished = j.history.iter().rev().find(|t| t.state.is_terminal()).map(|t| t.at.clone()).unwrap_or_default();
        let row = [
            j.mac.clone(),
            j.device_id.clone().unwrap_or_default(),
            j.wave.map(|w| w.to_string()).unwrap_or_default(),
            j.state.as_str().to_owned(),
            j.from_version.clone().unwrap_or_default(),
            j.current_version.clone().unwrap_or_default(),
            target.clone(),
            j.attempts.to_string(),
            j.error.clone().unwrap_or_default(),
            at(JobState::Queued),
            at(JobState::Commanded),
            at(JobState::Downloading),
            at(JobState::Installing),
            at(JobState::Rebooting),
            at(JobState::Verifying),
            if j.state.is_terminal() { finished } else { String::new() },
            j.evidence.clone().unwrap_or_default(),
            j.authenticated.to_string(),
        ];
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_group_without_their_device_specific_parts() {
        assert_eq!(
            reason_key("came back on 1.0.0, not 2.0.0: the new firmware did not boot (rolled back)"),
            "came back on …, not …: the new firmware did not boot (rolled back)"
        );
        assert_eq!(
            reason_key("no progress from the device for 300 s while commanded"),
            "no progress from the device for … s while commanded"
        );
        assert_eq!(reason_key("device aa:bb:cc:00:11:22 (v1.2.3) said: HTTP 404."), "device … (…) said: HTTP ….");
        assert_eq!(reason_key("device: flash write failed"), "device: flash write failed");
    }

    #[test]
    fn fields_with_commas_and_quotes_are_quoted() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
