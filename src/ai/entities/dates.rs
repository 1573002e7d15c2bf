//! Dates and times, absolute ("2026-03-03", "March 3rd", "3/4/2026", "17:30", "5pm") and
//! relative to the message's reference time ("yesterday", "last Monday", "2 days ago",
//! "in an hour"); a date next to a time ("tomorrow at 5pm") becomes one date-time.
//!
//! Conventions: a day and month without a year is the latest such date at most two months
//! after the reference; "last Monday" is the latest Monday before the reference
//! day, "next Monday" the first after it, a bare or "this" Monday the one in the reference's
//! week (weeks start on Monday).

use std::sync::LazyLock;

use chrono::{Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use regex::{Captures, Regex};

use super::{Entity, EntityKind, entity};

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the patterns in this file are valid")
}

const MONTH: &str = "january|february|march|april|may|june|july|august|september|october|\
                     november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec";
const WEEKDAY: &str = "monday|tuesday|wednesday|thursday|friday|saturday|sunday";
const COUNT: &str = "[0-9]{1,3}|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|\
                     twelve|(?:a\\s+)?couple\\s+of";
const UNIT: &str = "minute|min|hour|hr|day|week|month|year";

static ISO: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"\b([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?)?\b")
});
static MONTH_DAY: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r"(?i)\b({MONTH})\.?\s+([0-9]{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+([0-9]{{4}})\b)?"
    ))
});
static DAY_MONTH: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r"(?i)\b([0-9]{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({MONTH})\b(?:,?\s+([0-9]{{4}})\b)?"
    ))
});
static NUMERIC: LazyLock<Regex> =
    LazyLock::new(|| regex(r"\b([0-9]{1,2})[/.]([0-9]{1,2})[/.]([0-9]{4})\b"));
static RELATIVE_DAY: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\b(?:(?:the\s+)?day\s+before\s+yesterday|(?:the\s+)?day\s+after\s+tomorrow|today|tonight|yesterday|tomorrow)\b",
    )
});
static AGO: LazyLock<Regex> =
    LazyLock::new(|| regex(&format!(r"(?i)\b({COUNT})\s+({UNIT})s?\s+ago\b")));
static IN: LazyLock<Regex> =
    LazyLock::new(|| regex(&format!(r"(?i)\bin\s+({COUNT})\s+({UNIT})s?\b")));
static WEEKDAY_RE: LazyLock<Regex> =
    LazyLock::new(|| regex(&format!(r"(?i)\b(?:(last|next|this)\s+)?({WEEKDAY})\b")));
static TIME_12H: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)\b([0-9]{1,2})(?::([0-5][0-9]))?\s?(am\b|pm\b|a\.m\.|p\.m\.)"));
static TIME_24H: LazyLock<Regex> =
    LazyLock::new(|| regex(r"\b([01]?[0-9]|2[0-3]):([0-5][0-9])(?::[0-5][0-9])?\b"));
static TIME_WORD: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)\b(noon|midday|midnight)\b"));
/// What may stand between a date and the time after it, or a time and the date after it.
static DATE_THEN_TIME: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)^\s*(?:,\s*)?(?:at\s+|@\s*)?$"));
static TIME_THEN_DATE: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)^\s*(?:,\s*)?(?:on\s+)?$"));

/// A date or time found, before it becomes an [`Entity`].
#[derive(Clone, Copy)]
enum When {
    Date(NaiveDate),
    Time(NaiveTime),
    DateTime(NaiveDateTime),
}

pub(super) fn dates(text: &str, reference: NaiveDateTime, day_first: bool, out: &mut Vec<Entity>) {
    let today = reference.date();
    let mut found: Vec<(std::ops::Range<usize>, When)> = Vec::new();
    let mut scan = |regex: &Regex, read: &dyn Fn(&Captures) -> Option<When>| {
        for c in regex.captures_iter(text) {
            let all = c.get(0).expect("group 0 is the whole match");
            if let Some(when) = read(&c) {
                found.push((all.range(), when));
            }
        }
    };
    scan(&ISO, &|c| {
        let date = ymd(num(c, 1)?, num(c, 2)?, num(c, 3)?)?;
        match (c.get(4), c.get(5)) {
            (Some(_), Some(_)) => {
                let time = NaiveTime::from_hms_opt(num(c, 4)?, num(c, 5)?, num(c, 6).unwrap_or(0))?;
                Some(When::DateTime(date.and_time(time)))
            }
            _ => Some(When::Date(date)),
        }
    });
    let named = |c: &Captures, month: usize, day: usize| {
        let month = month_number(c.get(month)?.as_str())?;
        let day = num(c, day)?;
        match c.get(3) {
            Some(_) => ymd(num(c, 3)?, month, day),
            None => nearest(today, month, day),
        }
        .map(When::Date)
    };
    scan(&MONTH_DAY, &|c| named(c, 1, 2));
    scan(&DAY_MONTH, &|c| named(c, 2, 1));
    scan(&NUMERIC, &|c| {
        let (a, b) = (num(c, 1)?, num(c, 2)?);
        let (day, month) = if day_first { (a, b) } else { (b, a) };
        ymd(num(c, 3)?, month, day).map(When::Date)
    });
    scan(&RELATIVE_DAY, &|c| {
        let words = c.get(0)?.as_str().to_lowercase();
        let days = if words.contains("before") {
            -2
        } else if words.contains("after") {
            2
        } else if words == "yesterday" {
            -1
        } else if words == "tomorrow" {
            1
        } else {
            0
        };
        today
            .checked_add_signed(Duration::days(days))
            .map(When::Date)
    });
    scan(&AGO, &|c| shift(reference, c, -1));
    scan(&IN, &|c| shift(reference, c, 1));
    scan(&WEEKDAY_RE, &|c| {
        let day: Weekday = c.get(2)?.as_str().parse().ok()?;
        let (from, to) = (today.weekday(), day);
        let forward = (7 + to.num_days_from_monday() - from.num_days_from_monday()) % 7;
        let offset = match c.get(1).map(|m| m.as_str().to_lowercase()).as_deref() {
            Some("last") => -i64::from(if forward == 0 { 7 } else { 7 - forward }),
            Some("next") => i64::from(if forward == 0 { 7 } else { forward }),
            _ => i64::from(to.num_days_from_monday()) - i64::from(from.num_days_from_monday()),
        };
        today
            .checked_add_signed(Duration::days(offset))
            .map(When::Date)
    });
    scan(&TIME_12H, &|c| {
        let hour = num(c, 1)?;
        if !(1..=12).contains(&hour) {
            return None;
        }
        let pm = c.get(3)?.as_str().to_lowercase().starts_with('p');
        let hour = hour % 12 + if pm { 12 } else { 0 };
        NaiveTime::from_hms_opt(hour, num(c, 2).unwrap_or(0), 0).map(When::Time)
    });
    scan(&TIME_24H, &|c| {
        NaiveTime::from_hms_opt(num(c, 1)?, num(c, 2)?, 0).map(When::Time)
    });
    scan(&TIME_WORD, &|c| {
        let hour = if c.get(1)?.as_str().eq_ignore_ascii_case("midnight") {
            0
        } else {
            12
        };
        NaiveTime::from_hms_opt(hour, 0, 0).map(When::Time)
    });
    combine(text, &mut found);
    for (range, when) in found {
        let (kind, value) = match when {
            When::Date(d) => (EntityKind::Date, d.format("%Y-%m-%d").to_string()),
            When::Time(t) => (EntityKind::Time, t.format("%H:%M").to_string()),
            When::DateTime(dt) => (
                EntityKind::DateTime,
                dt.format("%Y-%m-%dT%H:%M:%S").to_string(),
            ),
        };
        out.push(entity(text, kind, None, range, value));
    }
}

/// Adds a date-time for every date followed by a time ("tomorrow at 5pm") and every time
/// followed by a date ("5pm on Friday").
fn combine(text: &str, found: &mut Vec<(std::ops::Range<usize>, When)>) {
    let mut joined = Vec::new();
    for (d_range, d) in found.iter() {
        let When::Date(date) = d else { continue };
        for (t_range, t) in found.iter() {
            let When::Time(time) = t else { continue };
            let span = if t_range.start >= d_range.end
                && DATE_THEN_TIME.is_match(&text[d_range.end..t_range.start])
            {
                d_range.start..t_range.end
            } else if d_range.start >= t_range.end
                && TIME_THEN_DATE.is_match(&text[t_range.end..d_range.start])
            {
                t_range.start..d_range.end
            } else {
                continue;
            };
            joined.push((span, When::DateTime(date.and_time(*time))));
        }
    }
    found.extend(joined);
}

fn num(c: &Captures, group: usize) -> Option<u32> {
    c.get(group)?.as_str().parse().ok()
}

fn ymd(year: u32, month: u32, day: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

fn month_number(name: &str) -> Option<u32> {
    let prefix: String = name.chars().take(3).collect::<String>().to_lowercase();
    const NAMES: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    NAMES
        .iter()
        .position(|n| *n == prefix)
        .map(|i| i as u32 + 1)
}

/// The latest date with this month and day that is at most [`AHEAD_DAYS`] after `today`:
/// support messages mostly speak of the past ("a charge on 3 March"), sometimes of the next
/// weeks ("due January 5").
fn nearest(today: NaiveDate, month: u32, day: u32) -> Option<NaiveDate> {
    let year = u32::try_from(today.year()).ok()?;
    let limit = today.checked_add_signed(Duration::days(AHEAD_DAYS))?;
    [year.saturating_sub(1), year, year + 1]
        .into_iter()
        .filter_map(|y| ymd(y, month, day))
        .filter(|d| *d <= limit)
        .max()
}

/// How far ahead a date without a year may be.
const AHEAD_DAYS: i64 = 61;

fn count(word: &str) -> Option<u32> {
    let word = word.to_lowercase();
    const WORDS: [&str; 12] = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve",
    ];
    if let Ok(n) = word.parse() {
        return Some(n);
    }
    if word == "a" || word == "an" {
        return Some(1);
    }
    if word.ends_with("of") {
        return Some(2);
    }
    WORDS.iter().position(|w| *w == word).map(|i| i as u32 + 1)
}

/// "2 days ago" (sign −1) or "in 2 days" (+1): minutes and hours give a date-time, longer
/// units a date.
fn shift(reference: NaiveDateTime, c: &Captures, sign: i64) -> Option<When> {
    let n = count(c.get(1)?.as_str())?;
    let unit = c.get(2)?.as_str().to_lowercase();
    let signed = |n: u32| sign * i64::from(n);
    let months = |m: u32| {
        let m = Months::new(m);
        if sign < 0 {
            reference.date().checked_sub_months(m)
        } else {
            reference.date().checked_add_months(m)
        }
    };
    match unit.as_str() {
        "minute" | "min" => reference
            .checked_add_signed(Duration::try_minutes(signed(n))?)
            .map(When::DateTime),
        "hour" | "hr" => reference
            .checked_add_signed(Duration::try_hours(signed(n))?)
            .map(When::DateTime),
        "day" => reference
            .date()
            .checked_add_signed(Duration::try_days(signed(n))?)
            .map(When::Date),
        "week" => reference
            .date()
            .checked_add_signed(Duration::try_weeks(signed(n))?)
            .map(When::Date),
        "month" => months(n).map(When::Date),
        _ => months(n.checked_mul(12)?).map(When::Date),
    }
}
