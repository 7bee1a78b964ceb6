//! Cron expressions for `on.schedule`, as GitHub Actions reads them: five fields (minute, hour,
//! day of month, month, day of week), in UTC, each `*`, a number, a range `a-b`, a step `*/n`
//! or `a-b/n`, or a comma list of these; months and days may be written `JAN`–`DEC` and
//! `SUN`–`SAT`, and day 7 is Sunday too. When both day fields are restricted a day matches if
//! either does (POSIX cron). Times are minutes since the Unix epoch (UTC), so the schedule
//! logic stays pure and testable.

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Whether the day-of-month / day-of-week field was `*` (or `*/1`).
    any_day: bool,
    any_weekday: bool,
}

/// Why an expression is not valid: the message, and the byte range of the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub message: String,
    pub start: usize,
    pub end: usize,
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(field: usize, text: &str) -> Option<u32> {
    if let Ok(n) = text.parse::<u32>() {
        return Some(n);
    }
    let upper = text.to_ascii_uppercase();
    let names: &[&str] = match field {
        3 => &MONTHS,
        4 => &WEEKDAYS,
        _ => return None,
    };
    names
        .iter()
        .position(|n| *n == upper)
        .map(|i| i as u32 + u32::from(field == 3))
}

/// Parse one field into a bit set; `offset` is where the field starts in the expression.
fn field(index: usize, text: &str, offset: usize) -> Result<(u64, bool), CronError> {
    let (name, lo, hi) = FIELDS[index];
    let mut bits = 0u64;
    let mut any = false;
    let mut at = offset;
    for part in text.split(',') {
        let err = |message: String| CronError {
            message,
            start: at,
            end: at + part.len(),
        };
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step = s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    err(format!(
                        "`{s}` is not a step in the {name} field; write a positive number, e.g. `*/15`"
                    ))
                })?;
                (r, step)
            }
            None => (part, 1),
        };
        let (start, end) = if range == "*" {
            if step == 1 {
                any = true;
            }
            (lo, hi)
        } else {
            let parse = |t: &str| {
                value(index, t).ok_or_else(|| {
                    err(if t.is_empty() {
                        format!("an empty value in the {name} field")
                    } else {
                        format!("`{t}` is not a valid {name}")
                    })
                })
            };
            match range.split_once('-') {
                Some((a, b)) => (parse(a)?, parse(b)?),
                None => {
                    let v = parse(range)?;
                    // `5/15` means from 5 to the end, every 15 (as cronie reads it).
                    (v, if part.contains('/') { hi } else { v })
                }
            }
        };
        if start < lo || end > hi {
            let bad = if start < lo { start } else { end };
            return Err(err(format!(
                "{bad} is out of range for the {name} field ({lo}-{hi})"
            )));
        }
        if start > end {
            return Err(err(format!(
                "the range `{range}` in the {name} field runs backwards; write the smaller value first"
            )));
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
        at += part.len() + 1;
    }
    Ok((bits, any))
}

impl Cron {
    /// Parse an expression; the error names the field and where it is.
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let mut parts = Vec::new();
        let mut start = None;
        for (i, c) in text
            .char_indices()
            .chain(std::iter::once((text.len(), ' ')))
        {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    parts.push((s, &text[s..i]));
                    start = None;
                }
                _ => {}
            }
        }
        if parts.len() != 5 {
            return Err(CronError {
                message: format!(
                    "a cron expression has 5 fields (minute hour day-of-month month day-of-week), this one has {}",
                    parts.len()
                ),
                start: 0,
                end: text.len(),
            });
        }
        let mut bits = [0u64; 5];
        let mut any = [false; 5];
        for (i, (offset, part)) in parts.iter().enumerate() {
            (bits[i], any[i]) = field(i, part, *offset)?;
        }
        // Sunday is 0 and 7.
        let mut weekdays = bits[4] as u8 & 0x7f;
        if bits[4] & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes: bits[0],
            hours: bits[1] as u32,
            days: bits[2] as u32,
            months: bits[3] as u16,
            weekdays,
            any_day: any[2],
            any_weekday: any[4],
        })
    }

    fn day_matches(&self, days_since_epoch: i64) -> bool {
        let (_, month, day) = civil(days_since_epoch);
        if self.months & (1 << month) == 0 {
            return false;
        }
        // 1970-01-01 was a Thursday.
        let weekday = (days_since_epoch + 4).rem_euclid(7) as u32;
        let dom = self.days & (1 << day) != 0;
        let dow = u32::from(self.weekdays) & (1 << weekday) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// Whether the expression fires at `minute` (minutes since the epoch, UTC).
    pub fn matches(&self, minute: i64) -> bool {
        let day = minute.div_euclid(1440);
        let in_day = minute.rem_euclid(1440);
        self.day_matches(day)
            && self.hours & (1 << (in_day / 60)) != 0
            && self.minutes & (1 << (in_day % 60)) != 0
    }

    /// The first firing minute of the day `day` at or after minute-of-day `from`.
    fn first_in_day(&self, from: i64) -> Option<i64> {
        (from..1440)
            .find(|m| self.hours & (1 << (m / 60)) != 0 && self.minutes & (1 << (m % 60)) != 0)
    }

    fn last_in_day(&self, to: i64) -> Option<i64> {
        (0..=to)
            .rev()
            .find(|m| self.hours & (1 << (m / 60)) != 0 && self.minutes & (1 << (m % 60)) != 0)
    }

    /// The first firing minute strictly after `minute`; `None` if there is none within
    /// eight years (e.g. `0 0 31 2 *`).
    pub fn next_after(&self, minute: i64) -> Option<i64> {
        let start = minute + 1;
        let first = start.div_euclid(1440);
        let mut from = start.rem_euclid(1440);
        for day in first..first + 366 * 8 {
            if self.day_matches(day)
                && let Some(m) = self.first_in_day(from)
            {
                return Some(day * 1440 + m);
            }
            from = 0;
        }
        None
    }

    /// The latest firing minute at or before `minute`; `None` if there is none within eight
    /// years.
    pub fn latest_at_or_before(&self, minute: i64) -> Option<i64> {
        let mut day = minute.div_euclid(1440);
        let mut to = minute.rem_euclid(1440);
        for _ in 0..(366 * 8) {
            if self.day_matches(day)
                && let Some(m) = self.last_in_day(to)
            {
                return Some(day * 1440 + m);
            }
            day -= 1;
            to = 1439;
        }
        None
    }
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minutes since the epoch of a UTC date and time.
    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        // Inverse of `civil` by search: fine for tests.
        let mut day = (y - 1970) * 365 + (y - 1969) / 4 - 400;
        while civil(day) != (y, mo, d) {
            day += 1;
        }
        day * 1440 + h * 60 + mi
    }

    #[test]
    fn dates_are_computed_from_day_counts() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
    }

    #[test]
    fn every_minute_fires_on_the_next_minute() {
        let c = Cron::parse("* * * * *").unwrap();
        assert_eq!(c.next_after(100), Some(101));
        assert_eq!(c.latest_at_or_before(100), Some(100));
    }

    #[test]
    fn a_daily_job_fires_at_its_hour_and_not_before() {
        let c = Cron::parse("0 3 * * *").unwrap();
        let t = at(2026, 12, 2, 1, 30);
        assert_eq!(c.next_after(t), Some(at(2026, 12, 2, 3, 0)));
        assert_eq!(c.latest_at_or_before(t), Some(at(2026, 12, 1, 3, 0)));
        assert_eq!(
            c.next_after(at(2026, 12, 2, 3, 0)),
            Some(at(2026, 12, 3, 3, 0))
        );
    }

    #[test]
    fn steps_ranges_lists_and_names_are_read() {
        let c = Cron::parse("*/15 9-17 * JAN,jul mon-fri").unwrap();
        // 2026-07-06 is a Monday.
        assert!(c.matches(at(2026, 7, 6, 9, 45)));
        assert!(!c.matches(at(2026, 7, 6, 9, 50)));
        assert!(!c.matches(at(2026, 7, 5, 9, 45)), "a Sunday");
        assert!(!c.matches(at(2026, 8, 3, 9, 45)), "August");
        let c = Cron::parse("5/20 * * * *").unwrap();
        assert!(c.matches(at(2026, 1, 1, 0, 45)) && !c.matches(at(2026, 1, 1, 0, 0)));
    }

    #[test]
    fn restricted_day_fields_match_when_either_matches_and_seven_is_sunday() {
        let c = Cron::parse("0 0 13 * 5").unwrap();
        assert!(c.matches(at(2026, 2, 13, 0, 0)), "the 13th");
        assert!(c.matches(at(2026, 2, 6, 0, 0)), "a Friday");
        assert!(!c.matches(at(2026, 2, 7, 0, 0)));
        let c = Cron::parse("0 0 * * 7").unwrap();
        assert!(c.matches(at(2026, 12, 6, 0, 0)), "a Sunday");
    }

    #[test]
    fn leap_days_are_found_years_ahead_and_impossible_dates_never() {
        let c = Cron::parse("0 0 29 2 *").unwrap();
        assert_eq!(
            c.next_after(at(2026, 3, 1, 0, 0)),
            Some(at(2028, 2, 29, 0, 0))
        );
        assert_eq!(Cron::parse("0 0 31 2 *").unwrap().next_after(0), None);
    }

    #[test]
    fn bad_expressions_say_which_field_and_where() {
        let e = Cron::parse("0 24 * * *").unwrap_err();
        assert_eq!((e.start, e.end), (2, 4));
        assert!(e.message.contains("hour field (0-23)"), "{}", e.message);
        let e = Cron::parse("*/0 * * * *").unwrap_err();
        assert!(e.message.contains("step"), "{}", e.message);
        let e = Cron::parse("0 3 * *").unwrap_err();
        assert!(e.message.contains("has 4"), "{}", e.message);
        let e = Cron::parse("0 3 * FOO *").unwrap_err();
        assert_eq!((e.start, e.end), (6, 9));
        let e = Cron::parse("0 5-3 * * *").unwrap_err();
        assert!(e.message.contains("backwards"), "{}", e.message);
    }
}
