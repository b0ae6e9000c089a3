//! Maintenance windows: when new devices may be commanded.
//!
//! Syntax: `[DAYS] HH:MM-HH:MM [±HH:MM]`. DAYS is `daily` (default), `weekdays`, `weekends`, or a
//! comma list of days and ranges (`mon-fri`, `sat,sun`, `mon,wed-fri`). A range that ends before it
//! starts runs overnight, and then the days name the night's *start*. The offset is the site's
//! UTC offset (default `+00:00`). Examples: `weekdays 22:00-05:00 +01:00`, `daily 01:00-04:00`.

use time::{OffsetDateTime, UtcOffset, Weekday};

use crate::error::{CoreError, Result};

/// A parsed window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday = 0 … Sunday = 6.
    days: [bool; 7],
    start_min: u32,
    end_min: u32,
    offset: UtcOffset,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_index(s: &str) -> Option<usize> {
    let s = s.to_ascii_lowercase();
    DAY_NAMES.iter().position(|d| s.starts_with(d) && s.len() >= 3)
}

fn minutes(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
}

impl Window {
    pub fn parse(expr: &str) -> Result<Window> {
        let bad = |m: &str| CoreError::BadRequest(format!("window {expr:?}: {m} (e.g. `weekdays 22:00-05:00 +01:00`)"));
        let parts: Vec<&str> = expr.split_whitespace().collect();
        let (days_part, rest) = match parts.first() {
            Some(p) if !p.chars().next().is_some_and(|c| c.is_ascii_digit()) => (Some(*p), &parts[1..]),
            _ => (None, &parts[..]),
        };
        let mut days = [false; 7];
        match days_part.map(str::to_ascii_lowercase).as_deref() {
            None | Some("daily") => days = [true; 7],
            Some("weekdays") => days[..5].iter_mut().for_each(|d| *d = true),
            Some("weekends") => days[5..].iter_mut().for_each(|d| *d = true),
            Some(list) => {
                for item in list.split(',') {
                    match item.split_once('-') {
                        Some((a, b)) => {
                            let (a, b) = (
                                day_index(a).ok_or_else(|| bad("unknown day"))?,
                                day_index(b).ok_or_else(|| bad("unknown day"))?,
                            );
                            let mut i = a;
                            loop {
                                days[i] = true;
                                if i == b {
                                    break;
                                }
                                i = (i + 1) % 7;
                            }
                        }
                        None => days[day_index(item).ok_or_else(|| bad("unknown day"))?] = true,
                    }
                }
            }
        }
        let range = rest.first().ok_or_else(|| bad("missing the time range"))?;
        let (a, b) = range.split_once('-').ok_or_else(|| bad("time range must be HH:MM-HH:MM"))?;
        let start_min = minutes(a).ok_or_else(|| bad("bad start time"))?;
        let end_min = minutes(b).ok_or_else(|| bad("bad end time"))?;
        if start_min == end_min {
            return Err(bad("the window is empty"));
        }
        let offset = match rest.get(1) {
            None => UtcOffset::UTC,
            Some(o) => {
                let sign = match o.chars().next() {
                    Some('+') => 1,
                    Some('-') => -1,
                    _ => return Err(bad("offset must look like +01:00")),
                };
                let m = minutes(&o[1..]).ok_or_else(|| bad("offset must look like +01:00"))? as i32 * sign;
                UtcOffset::from_whole_seconds(m * 60).map_err(|_| bad("offset out of range"))?
            }
        };
        if rest.len() > 2 {
            return Err(bad("unexpected words after the offset"));
        }
        Ok(Window { days, start_min, end_min, offset })
    }

    /// Is `at` inside the window?
    pub fn is_open(&self, at: OffsetDateTime) -> bool {
        let local = at.to_offset(self.offset);
        let now = u32::from(local.hour()) * 60 + u32::from(local.minute());
        let today = weekday_index(local.weekday());
        if self.start_min < self.end_min {
            self.days[today] && (self.start_min..self.end_min).contains(&now)
        } else {
            let yesterday = (today + 6) % 7;
            (self.days[today] && now >= self.start_min) || (self.days[yesterday] && now < self.end_min)
        }
    }
}

impl Window {
    /// The next moment (whole minute) at or after `at` when the window's state differs from
    /// `open`: with `open` false, when it opens next; with `open` true, when it closes. `None` if
    /// that never happens within a week (a window always open).
    fn next_change(&self, at: OffsetDateTime, open: bool) -> Option<OffsetDateTime> {
        let start = at.replace_second(0).ok()?.replace_nanosecond(0).ok()?;
        // A week of minutes covers every pattern; windows change state on whole minutes.
        (0..=7 * 24 * 60).map(|m| start + time::Duration::minutes(m)).find(|t| *t >= at && self.is_open(*t) != open)
    }

    /// When the window opens next (now, if it is open).
    pub fn next_open(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.is_open(at) { Some(at) } else { self.next_change(at, false) }
    }

    /// When the window closes next, if it is open now.
    pub fn next_close(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.is_open(at) { self.next_change(at, true) } else { None }
    }
}

fn weekday_index(d: Weekday) -> usize {
    usize::from(d.number_days_from_monday())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::datetime;

    #[test]
    fn overnight_weekday_windows_belong_to_the_night_they_start() {
        let w = Window::parse("weekdays 22:00-05:00 +01:00").unwrap();
        // 2026-11-23 is a Monday. 21:30 UTC = 22:30 local Monday: open.
        assert!(w.is_open(datetime!(2026-11-23 21:30 UTC)));
        // Tuesday 03:00 local (Monday night): open.
        assert!(w.is_open(datetime!(2026-11-24 02:00 UTC)));
        // Tuesday 12:00 local: closed.
        assert!(!w.is_open(datetime!(2026-11-24 11:00 UTC)));
        // Saturday 02:00 local is Friday's night: open; Sunday 02:00 local is Saturday's: closed.
        assert!(w.is_open(datetime!(2026-11-28 01:00 UTC)));
        assert!(!w.is_open(datetime!(2026-11-29 01:00 UTC)));
    }

    #[test]
    fn day_lists_and_daytime_ranges() {
        let w = Window::parse("mon,wed-fri 08:00-17:00").unwrap();
        assert!(w.is_open(datetime!(2026-11-23 08:00 UTC)));
        assert!(!w.is_open(datetime!(2026-11-24 09:00 UTC)));
        assert!(w.is_open(datetime!(2026-11-27 16:59 UTC)));
        assert!(!w.is_open(datetime!(2026-11-27 17:00 UTC)));
        assert!(Window::parse("00:00-24:00").unwrap().is_open(datetime!(2026-11-29 23:59 UTC)));
    }

    #[test]
    fn the_next_opening_and_closing_are_found() {
        let w = Window::parse("weekdays 22:00-05:00 +01:00").unwrap();
        // Monday 12:00 UTC (13:00 local): opens at 22:00 local = 21:00 UTC.
        assert_eq!(w.next_open(datetime!(2026-11-23 12:00:30 UTC)), Some(datetime!(2026-11-23 21:00 UTC)));
        assert_eq!(w.next_close(datetime!(2026-11-23 12:00 UTC)), None);
        // Inside: open now, closes at 05:00 local Tuesday = 04:00 UTC.
        assert_eq!(w.next_open(datetime!(2026-11-23 22:00 UTC)), Some(datetime!(2026-11-23 22:00 UTC)));
        assert_eq!(w.next_close(datetime!(2026-11-23 22:00 UTC)), Some(datetime!(2026-11-24 04:00 UTC)));
        // Saturday noon: the next night that starts on a weekday is Monday's.
        assert_eq!(w.next_open(datetime!(2026-11-28 11:00 UTC)), Some(datetime!(2026-11-30 21:00 UTC)));
        assert_eq!(Window::parse("00:00-24:00").unwrap().next_close(datetime!(2026-11-28 11:00 UTC)), None);
    }

    #[test]
    fn bad_windows_are_refused() {
        for bad in [
            "",
            "weekdays",
            "noday 01:00-02:00",
            "25:00-01:00",
            "01:00-01:00",
            "01:00-02:00 CET",
            "01:00-02:00 +01:00 x",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }
}
