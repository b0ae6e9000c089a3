//! Human output: aligned tables and key/value blocks. JSON output is serde's, not this.
//!
//! Everything a client command prints goes through [`outln!`] and [`out!`], not `println!`: a
//! reader that went away (`flotilla events list | head`) ends the program quietly, as it would a
//! C tool, where `println!` would panic.

use std::io::Write;

/// `println!` to standard output, ending the program quietly when nobody reads it any more.
macro_rules! outln {
    () => {
        $crate::output::emit(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::emit(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` to standard output, ending the program quietly when nobody reads it any more.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::emit(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};

/// Writes to standard output. A closed pipe (the reader has all it wanted) exits 0; any other
/// write error exits 1 with the reason: there is nothing better to do with output that cannot
/// be written.
pub fn emit(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        exit_on_write_error(&e);
    }
}

/// Ends the program after standard output failed: quietly (0) for a closed pipe, else 1.
pub fn exit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// Prints rows as columns separated by two spaces, the header first.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        outln!("{}", out.trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// Prints `key: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in pairs {
        outln!("{:<w$} {v}", format!("{k}:"));
    }
}

/// `Some(x)` as text, `None` as `-`.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Bytes in a readable unit.
pub fn size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// How long ago an RFC 3339 time was: `12 s ago`, `3 min ago`, `2 h 5 min ago`.
pub fn ago(at: &str) -> Option<String> {
    let then = flotilla_store::clock::parse_rfc3339(at)?;
    let secs = (flotilla_store::clock::now_ms() - then) / 1000;
    Some(if secs < 0 {
        format!("in {}", flotilla_core::rollout::run::human_span(-secs))
    } else {
        format!("{} ago", flotilla_core::rollout::run::human_span(secs))
    })
}

/// An RFC 3339 time with how long ago it was: `2026-11-23T13:29:49.123Z (12 s ago)`.
pub fn when(at: &str) -> String {
    match ago(at) {
        Some(a) => format!("{at} ({a})"),
        None => at.to_owned(),
    }
}

/// `text` cut to `max` characters, with `…` when something was cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_counts_characters_and_marks_the_cut() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééééééé", 4), "ééé…");
        assert_eq!(clip("abcdef", 6), "abcdef");
    }

    #[test]
    fn ago_reads_rfc3339_and_refuses_anything_else() {
        let t = flotilla_store::clock::rfc3339(flotilla_store::clock::now_ms() - 90_000);
        assert_eq!(ago(&t).as_deref(), Some("2 min ago"));
        assert_eq!(ago("yesterday"), None);
        assert_eq!(when("yesterday"), "yesterday");
    }
}
