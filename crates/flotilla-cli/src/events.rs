//! `flotilla events …`: the audit log, listed for people or exported whole as JSON or CSV.
//!
//! Both page through `GET /api/v1/events` (newest first) until the log or the asked number
//! ends. An export holds one page in memory at a time, whatever the size of the log, and writes
//! a file only once it is complete (a temporary file beside it is renamed at the end).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use flotilla_proto::{Event, EventPage};
use serde_json::Value;

use crate::client::{Api, print_json, with_query};
use crate::output::{clip, exit_on_write_error, outln, table};
use crate::{ApiArgs, CliError, CliResult};

/// Events the admin API gives at most per page.
const PAGE: u32 = 1000;

#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// The newest events: time, kind, actor, subject and what happened.
    List {
        /// Only events at or after this time: RFC 3339 (2026-12-01T00:00:00Z) or a look-back
        /// (90s, 30m, 2h, 7d, 2w).
        #[arg(long)]
        since: Option<String>,
        /// Only kinds starting with this, e.g. `rollout.` or `device.offline`.
        #[arg(long)]
        kind: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Every event (or every one since a time, of a kind), newest first, as JSON or CSV.
    Export {
        /// Only events at or after this time: RFC 3339 or a look-back (2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only kinds starting with this.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A JSON array of events, one event a line.
    Json,
    /// RFC 4180 CSV: id, at, kind, actor, subject, data (compact JSON).
    Csv,
}

pub async fn run(cmd: EventsCmd) -> CliResult {
    match cmd {
        EventsCmd::List { since, kind, limit, json, api } => {
            if limit == 0 {
                return Err(CliError::refused("--limit must be at least 1"));
            }
            let api = Api::resolve(&api)?;
            let mut pager = Pager::new(&api, since.as_deref(), kind)?;
            let mut events: Vec<Event> = Vec::new();
            while events.len() < limit as usize {
                let want = (limit - events.len() as u32).min(PAGE);
                let Some(page) = pager.next(want).await? else { break };
                events.extend(page);
            }
            if json {
                return print_json(&events);
            }
            if events.is_empty() {
                outln!("No events{}.", if pager.filtered() { " match" } else { " yet" });
                return Ok(());
            }
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    vec![
                        e.at.clone(),
                        e.kind.clone(),
                        e.actor.clone(),
                        e.subject.clone().unwrap_or_else(|| "-".into()),
                        clip(&summary(&e.data), 100),
                    ]
                })
                .collect();
            table(&["TIME", "KIND", "ACTOR", "SUBJECT", "DETAILS"], &rows);
            if !pager.done {
                outln!("(newest {} shown; --limit shows more, `flotilla events export` writes them all)", events.len());
            }
            Ok(())
        }
        EventsCmd::Export { since, kind, format, output, api } => {
            let api = Api::resolve(&api)?;
            let mut pager = Pager::new(&api, since.as_deref(), kind)?;
            match output {
                Some(path) => {
                    let n = export_to_file(&mut pager, format, &path).await?;
                    outln!("Wrote {n} event{} to {}.", plural(n), path.display());
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut out = std::io::BufWriter::new(stdout.lock());
                    let n = export(&mut pager, format, &mut out).await?;
                    if let Err(e) = out.flush() {
                        exit_on_write_error(&e);
                    }
                    // Standard output is the export itself: the count goes to standard error.
                    eprintln!("Exported {n} event{}.", plural(n));
                }
            }
            Ok(())
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Pages through the audit log, newest first.
struct Pager<'a> {
    api: &'a Api,
    since: Option<String>,
    kind: Option<String>,
    before: Option<i64>,
    done: bool,
}

impl<'a> Pager<'a> {
    fn new(api: &'a Api, since: Option<&str>, kind: Option<String>) -> CliResult<Pager<'a>> {
        let since = since.map(|s| parse_since(s, flotilla_store::clock::now_ms())).transpose()?;
        Ok(Pager { api, since, kind, before: None, done: false })
    }

    fn filtered(&self) -> bool {
        self.since.is_some() || self.kind.is_some()
    }

    /// The next page of at most `limit` events; `None` once the log has no more.
    async fn next(&mut self, limit: u32) -> CliResult<Option<Vec<Event>>> {
        if self.done {
            return Ok(None);
        }
        let path = with_query(
            "/api/v1/events",
            &[
                ("limit", Some(limit.to_string())),
                ("before", self.before.map(|b| b.to_string())),
                ("kind", self.kind.clone()),
                ("since", self.since.clone()),
            ],
        );
        let page: EventPage = self.api.get(&path).await?;
        match page.next_before {
            // Ids only go down page after page; anything else would loop for ever.
            Some(next) if self.before.is_some_and(|b| next >= b) => {
                return Err(CliError::failure(format!(
                    "the admin API paged backwards (next_before {next} after {})",
                    self.before.unwrap_or_default()
                )));
            }
            Some(next) => self.before = Some(next),
            None => self.done = true,
        }
        Ok(Some(page.events))
    }
}

/// Writes the export to `path` through a temporary file beside it, renamed once complete.
async fn export_to_file(pager: &mut Pager<'_>, format: ExportFormat, path: &Path) -> CliResult<u64> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "events".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let cannot = |e: std::io::Error, p: &Path| CliError::failure(format!("cannot write {}: {e}", p.display()));
    let file = std::fs::File::create(&tmp).map_err(|e| cannot(e, &tmp))?;
    let mut out = std::io::BufWriter::new(file);
    let written = async {
        let n = export(pager, format, &mut out).await?;
        let file = out.into_inner().map_err(|e| cannot(e.into_error(), &tmp))?;
        file.sync_all().map_err(|e| cannot(e, &tmp))?;
        std::fs::rename(&tmp, path).map_err(|e| cannot(e, path))?;
        Ok(n)
    }
    .await;
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes every event the pager gives to `out`, a page at a time; returns how many.
async fn export(pager: &mut Pager<'_>, format: ExportFormat, out: &mut impl Write) -> CliResult<u64> {
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // Standard output's reader has all it wanted.
            exit_on_write_error(&e);
        }
        CliError::failure(format!("cannot write the export: {e}"))
    };
    let mut n: u64 = 0;
    match format {
        ExportFormat::Json => out.write_all(b"[").map_err(io)?,
        ExportFormat::Csv => out.write_all(b"id,at,kind,actor,subject,data\r\n").map_err(io)?,
    }
    while let Some(page) = pager.next(PAGE).await? {
        for e in &page {
            match format {
                ExportFormat::Json => {
                    out.write_all(if n == 0 { b"\n" } else { b",\n" }).map_err(io)?;
                    let line = serde_json::to_string(e).map_err(|e| CliError::failure(e.to_string()))?;
                    out.write_all(line.as_bytes()).map_err(io)?;
                }
                ExportFormat::Csv => out.write_all(csv_row(e).as_bytes()).map_err(io)?,
            }
            n += 1;
        }
    }
    if format == ExportFormat::Json {
        out.write_all(if n == 0 { b"]\n" } else { b"\n]\n" }).map_err(io)?;
    }
    Ok(n)
}

/// One event as an RFC 4180 CSV row (CRLF ended): id, at, kind, actor, subject, data as compact
/// JSON.
fn csv_row(e: &Event) -> String {
    let fields = [
        e.id.to_string(),
        e.at.clone(),
        e.kind.clone(),
        e.actor.clone(),
        e.subject.clone().unwrap_or_default(),
        e.data.to_string(),
    ];
    let mut row = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    row.push_str("\r\n");
    row
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// An event's data in one line for people: `key=value` for each field that is set, values that
/// are lists or objects as compact JSON.
pub fn summary(data: &Value) -> String {
    let one = |v: &Value| match v {
        Value::String(s) if !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains('"') => s.clone(),
        other => other.to_string(),
    };
    match data {
        Value::Null => String::new(),
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}={}", one(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => one(other),
    }
}

/// `--since`: an RFC 3339 time as it is, or a look-back from `now_ms` (`90s`, `30m`, `2h`, `7d`,
/// `2w`) as RFC 3339.
pub fn parse_since(s: &str, now_ms: i64) -> CliResult<String> {
    let s = s.trim();
    if flotilla_store::clock::parse_rfc3339(s).is_some() {
        return Ok(s.to_owned());
    }
    let bad = || {
        CliError::refused(format!(
            "--since {s:?}: an RFC 3339 time (2026-12-01T00:00:00Z) or a look-back (90s, 30m, 2h, 7d, 2w)"
        ))
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: i64 = s[..split].parse().map_err(|_| bad())?;
    let unit_ms: i64 = match &s[split..] {
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    let back = n.checked_mul(unit_ms).filter(|ms| *ms <= now_ms).ok_or_else(bad)?;
    Ok(flotilla_store::clock::rfc3339(now_ms - back))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn since_takes_rfc3339_or_a_look_back() {
        let now = flotilla_store::clock::parse_rfc3339("2026-12-08T12:00:00Z").unwrap();
        assert_eq!(parse_since("2026-12-01T00:00:00+01:00", now).unwrap(), "2026-12-01T00:00:00+01:00");
        assert_eq!(parse_since("2h", now).unwrap(), "2026-12-08T10:00:00Z");
        assert_eq!(parse_since("7d", now).unwrap(), "2026-12-01T12:00:00Z");
        assert_eq!(parse_since(" 90s ", now).unwrap(), "2026-12-08T11:58:30Z");
        assert_eq!(parse_since("1w", now).unwrap(), "2026-12-01T12:00:00Z");
        for bad in ["", "h", "2y", "-2h", "yesterday", "99999999999999d"] {
            assert_eq!(parse_since(bad, now).unwrap_err().exit_code, 2, "{bad}");
        }
    }

    #[test]
    fn csv_rows_quote_what_needs_it() {
        let e = Event {
            id: 7,
            at: "2026-12-08T12:00:00Z".into(),
            kind: "firmware.changed".into(),
            actor: "admin-api".into(),
            subject: Some("firmware:3".into()),
            data: json!({"notes": "line 1\nsay \"hi\", then go"}),
        };
        assert_eq!(
            csv_row(&e),
            "7,2026-12-08T12:00:00Z,firmware.changed,admin-api,firmware:3,\
             \"{\"\"notes\"\":\"\"line 1\\nsay \\\"\"hi\\\"\", then go\"\"}\"\r\n"
        );
        let bare = Event { subject: None, data: json!(null), ..e };
        assert_eq!(csv_row(&bare), "7,2026-12-08T12:00:00Z,firmware.changed,admin-api,,null\r\n");
    }

    #[test]
    fn a_summary_is_one_line_of_what_is_set() {
        let data = json!({"mac": "02:00:00:00:00:01", "ip": null, "reason": "its MQTT session ended", "online": false, "labels": ["a", "b"]});
        assert_eq!(
            summary(&data),
            "labels=[\"a\",\"b\"] mac=02:00:00:00:00:01 online=false reason=\"its MQTT session ended\""
        );
        assert_eq!(summary(&json!(null)), "");
        assert_eq!(summary(&json!("plain")), "plain");
        assert!(!summary(&json!({"notes": "a\nb"})).contains('\n'));
    }
}
