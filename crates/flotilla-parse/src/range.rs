//! The HTTP `Range` header of a firmware download (RFC 9110 §14): one byte range, or the whole
//! file when the header asks for something else.

/// What to send for a `Range` header on a resource of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// Ignore the header and send everything (multiple or malformed ranges, RFC 9110 §14.2).
    Full,
    Partial {
        start: u64,
        end_inclusive: u64,
    },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Interprets a `Range` header: `bytes=a-b`, `bytes=a-` or `bytes=-n`, one range only.
pub fn parse_range(header: &str, len: u64) -> RangeDecision {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeDecision::Full;
    };
    if spec.contains(',') {
        return RangeDecision::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeDecision::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| if s.bytes().all(|c| c.is_ascii_digit()) { s.parse::<u64>().ok() } else { None };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeDecision::Full,
        // Suffix range: the last n bytes.
        (true, false) => match parse(b) {
            None => RangeDecision::Full,
            // Nothing to take the last bytes of (RFC 9110 §14.1.3: unsatisfiable on an empty
            // representation); found by the `range` fuzz target.
            Some(0) => RangeDecision::Unsatisfiable,
            Some(_) if len == 0 => RangeDecision::Unsatisfiable,
            Some(n) => RangeDecision::Partial { start: len.saturating_sub(n), end_inclusive: len - 1 },
        },
        (false, _) => {
            let Some(start) = parse(a) else { return RangeDecision::Full };
            let end = if b.is_empty() {
                Some(len.saturating_sub(1))
            } else {
                match parse(b) {
                    None => return RangeDecision::Full,
                    Some(e) if e < start => return RangeDecision::Full,
                    Some(e) => Some(e.min(len.saturating_sub(1))),
                }
            };
            match end {
                _ if start >= len => RangeDecision::Unsatisfiable,
                Some(end_inclusive) => RangeDecision::Partial { start, end_inclusive },
                None => RangeDecision::Full,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeDecision::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-0", 100), Partial { start: 0, end_inclusive: 0 });
        assert_eq!(parse_range("bytes=10-19", 100), Partial { start: 10, end_inclusive: 19 });
        assert_eq!(parse_range("bytes=90-", 100), Partial { start: 90, end_inclusive: 99 });
        assert_eq!(parse_range("bytes=90-500", 100), Partial { start: 90, end_inclusive: 99 });
        assert_eq!(parse_range("bytes=-10", 100), Partial { start: 90, end_inclusive: 99 });
        assert_eq!(parse_range("bytes=-500", 100), Partial { start: 0, end_inclusive: 99 });
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        // An empty file: nothing is satisfiable, and nothing underflows.
        for header in ["bytes=-500", "bytes=0-", "bytes=0-0", "bytes=-1"] {
            assert_eq!(parse_range(header, 0), Unsatisfiable, "{header}");
        }
        for ignored in ["bytes=0-1,5-6", "items=0-1", "bytes=x-1", "bytes=5-1", "bytes=-", "bytes=+1-2", "bytes"] {
            assert_eq!(parse_range(ignored, 100), Full, "{ignored}");
        }
    }
}
