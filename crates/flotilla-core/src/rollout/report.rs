//! The per-rollout report handed over at the end of a job on site: one row per device with its
//! versions before and after, every state with its time, and the error if any.

use flotilla_proto::rollout::{JobState, RolloutDetail};

/// CSV columns, in order.
pub const CSV_COLUMNS: [&str; 16] = [
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
];

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
            if j.state == JobState::Skipped { String::new() } else { (j.wave + 1).to_string() },
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
    fn fields_with_commas_and_quotes_are_quoted() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
