//! Ids, URLs, emails, money amounts and phone numbers.

use std::sync::LazyLock;

use regex::Regex;

use super::{Entity, EntityKind, entity};

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the patterns in this file are valid")
}

static URL: LazyLock<Regex> = LazyLock::new(|| regex(r#"(?i)\b(?:https?://|www\.)[^\s<>"'`]+"#));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)[a-z0-9._%+-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}\b",
    )
});
/// A phone number as written: an optional `+`, then digit groups joined by single spaces,
/// dots or dashes, some possibly in parentheses.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?:\+\s?)?(?:\([0-9]{1,4}\)|[0-9]{1,5})(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,6}")
});

/// An amount: digits with optional thousands groups (`,` `.` `'` or a narrow space) and an
/// optional one- or two-digit fraction (`.` or `,`).
const NUMBER: &str =
    r"(?:[0-9]{1,3}(?:[,.'\u{a0}\u{202f}][0-9]{3})+(?:[.,][0-9]{1,2})?|[0-9]+(?:[.,][0-9]{1,2})?)";
const SYMBOL: &str = r"US\$|[$€£¥₹]";
const CODE: &str =
    r"USD|EUR|GBP|JPY|CHF|CAD|AUD|NZD|INR|BRL|MXN|PLN|SEK|NOK|DKK|CZK|HUF|ZAR|SGD|HKD|CNY|AED";
const WORD: &str = r"(?i:dollars?|bucks|euros?|pounds?|quid|rupees?)";

static MONEY: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    [
        regex(&format!(r"(?P<cur>{SYMBOL})\s?(?P<num>{NUMBER})\b")),
        regex(&format!(r"\b(?P<num>{NUMBER})\s?(?P<cur>{SYMBOL})")),
        regex(&format!(r"\b(?P<cur>{CODE})\s?(?P<num>{NUMBER})\b")),
        regex(&format!(r"\b(?P<num>{NUMBER})\s?(?P<cur>{CODE}|{WORD})\b")),
    ]
});

/// `order #5521` → `ORDER-5521`: uppercase, each run of separators made one dash.
pub(super) fn normalise_id(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.chars() {
        if c.is_whitespace() || matches!(c, '#' | '-' | ':' | '_') {
            gap = !out.is_empty();
        } else {
            if gap {
                out.push('-');
                gap = false;
            }
            out.extend(c.to_uppercase());
        }
    }
    out
}

pub(super) fn urls(text: &str, out: &mut Vec<Entity>) {
    for m in URL.find_iter(text) {
        // `www.` after `@` or a dot is part of an email address or a longer host.
        if matches!(text[..m.start()].chars().next_back(), Some('@' | '.' | '/')) {
            continue;
        }
        let url = trim_url(m.as_str());
        if url.len() <= "www.".len() || url.ends_with("://") {
            continue;
        }
        let range = m.start()..m.start() + url.len();
        out.push(entity(
            text,
            EntityKind::Url,
            None,
            range,
            normalise_url(url),
        ));
    }
}

/// Drops trailing punctuation that ends the sentence rather than the URL; a closing bracket
/// stays when the URL opened one.
fn trim_url(url: &str) -> &str {
    let mut url = url;
    loop {
        let Some(last) = url.chars().next_back() else {
            return url;
        };
        let unbalanced = |open: char| url.matches(open).count() < url.matches(last).count();
        let drop = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '*' => true,
            ')' => unbalanced('('),
            ']' => unbalanced('['),
            '}' => unbalanced('{'),
            _ => false,
        };
        if !drop {
            return url;
        }
        url = &url[..url.len() - last.len_utf8()];
    }
}

/// Adds `http://` to a bare `www.` and lowercases the scheme and host.
fn normalise_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (url[..i].to_lowercase(), &url[i + 3..]),
        None => ("http".to_owned(), url),
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    format!(
        "{scheme}://{}{}",
        rest[..host_end].to_lowercase(),
        &rest[host_end..]
    )
}

pub(super) fn emails(text: &str, out: &mut Vec<Entity>) {
    for m in EMAIL.find_iter(text) {
        let local_start = m.as_str().trim_start_matches('.');
        let start = m.end() - local_start.len();
        let value = text[start..m.end()].to_lowercase();
        out.push(entity(text, EntityKind::Email, None, start..m.end(), value));
    }
}

pub(super) fn money(text: &str, out: &mut Vec<Entity>) {
    for regex in MONEY.iter() {
        for c in regex.captures_iter(text) {
            let (Some(all), Some(num), Some(cur)) = (c.get(0), c.name("num"), c.name("cur")) else {
                continue;
            };
            if touches_word(text, all.start(), all.end()) {
                continue;
            }
            let Some(code) = currency(cur.as_str()) else {
                continue;
            };
            let value = format!("{} {code}", normalise_amount(num.as_str()));
            out.push(entity(text, EntityKind::Money, None, all.range(), value));
        }
    }
}

/// Whether the match is glued to a letter or digit on either side (`x$5`, `$5x`).
fn touches_word(text: &str, start: usize, end: usize) -> bool {
    let glued = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    glued(text[..start].chars().next_back()) || glued(text[end..].chars().next())
}

fn currency(written: &str) -> Option<&'static str> {
    let lower = written.to_lowercase();
    Some(match lower.trim_end_matches('s') {
        "$" | "us$" | "dollar" | "buck" => "USD",
        "€" | "euro" => "EUR",
        "£" | "pound" | "quid" => "GBP",
        "¥" => "JPY",
        "₹" | "rupee" => "INR",
        _ => {
            return CODE
                .split('|')
                .find(|code| code.eq_ignore_ascii_case(written));
        }
    })
}

/// `1.234,56` → `1234.56`, `12,50` → `12.50`, `1,234` → `1234`: the last `.` or `,` is the
/// decimal point when one or two digits follow it, every other separator groups thousands.
fn normalise_amount(number: &str) -> String {
    let digits_after = |i: usize| number[i + 1..].chars().count();
    let decimal = number
        .rfind(['.', ','])
        .filter(|&i| (1..=2).contains(&digits_after(i)));
    let (whole, fraction) = match decimal {
        Some(i) => (&number[..i], Some(&number[i + 1..])),
        None => (number, None),
    };
    let whole: String = whole.chars().filter(char::is_ascii_digit).collect();
    let trimmed = whole.trim_start_matches('0');
    let whole = if trimmed.is_empty() { "0" } else { trimmed };
    match fraction {
        Some(f) => format!("{whole}.{f}"),
        None => whole.to_owned(),
    }
}

pub(super) fn phones(text: &str, calling_code: Option<u16>, out: &mut Vec<Entity>) {
    for m in PHONE.find_iter(text) {
        let written = m.as_str();
        let digits: String = written.chars().filter(char::is_ascii_digit).collect();
        let grouped = written.contains([' ', '.', '-', '(']);
        let plus = written.starts_with('+');
        let enough = if plus || grouped {
            (7..=15).contains(&digits.len())
        } else {
            (10..=15).contains(&digits.len())
        };
        let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || "-./_".contains(c));
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        // `2026-02-30` is a mistyped date, not a phone number.
        let date_shaped = written.len() == 10 && written.as_bytes()[4] == b'-';
        if !enough || date_shaped || glued(before) || glued(after) {
            continue;
        }
        let value = if plus {
            format!("+{digits}")
        } else if let Some(international) = digits.strip_prefix("00") {
            format!("+{international}")
        } else if let Some(code) = calling_code {
            format!("+{code}{}", digits.strip_prefix('0').unwrap_or(&digits))
        } else {
            digits
        };
        out.push(entity(text, EntityKind::Phone, None, m.range(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_either_decimal_separator() {
        assert_eq!(normalise_amount("12.50"), "12.50");
        assert_eq!(normalise_amount("12,50"), "12.50");
        assert_eq!(normalise_amount("1,234"), "1234");
        assert_eq!(normalise_amount("1.234,5"), "1234.5");
        assert_eq!(normalise_amount("1,234,567.89"), "1234567.89");
        assert_eq!(normalise_amount("007"), "7");
        assert_eq!(normalise_amount("0,99"), "0.99");
    }

    #[test]
    fn ids_get_one_dash_between_prefix_and_number() {
        assert_eq!(normalise_id("order #5521"), "ORDER-5521");
        assert_eq!(normalise_id("ride-48213"), "RIDE-48213");
        assert_eq!(normalise_id("Ticket 7781"), "TICKET-7781");
    }

    #[test]
    fn urls_lose_sentence_punctuation_but_keep_their_brackets() {
        assert_eq!(trim_url("https://x.org/a."), "https://x.org/a");
        assert_eq!(
            trim_url("https://x.org/wiki/A_(b))."),
            "https://x.org/wiki/A_(b)"
        );
        assert_eq!(
            normalise_url("WWW.Example.COM/Path"),
            "http://www.example.com/Path"
        );
    }

    #[test]
    fn currencies_from_symbols_codes_and_words() {
        assert_eq!(currency("$"), Some("USD"));
        assert_eq!(currency("€"), Some("EUR"));
        assert_eq!(currency("Euros"), Some("EUR"));
        assert_eq!(currency("chf"), Some("CHF"));
        assert_eq!(currency("XYZ"), None);
    }
}
