use chrono::{NaiveDate, NaiveDateTime};
use proptest::prelude::*;

use super::*;

/// Sunday 22 November 2026, 10:30.
fn reference() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 22)
        .and_then(|d| d.and_hms_opt(10, 30, 0))
        .expect("a valid date")
}

fn extractor() -> EntityExtractor {
    let config = EntityConfig {
        gazetteers: vec![Gazetteer {
            name: "city".into(),
            entries: vec![
                "Lisbon".into(),
                "São Paulo".into(),
                "New York".into(),
                " ".into(),
            ],
        }],
        ..EntityConfig::default()
    };
    EntityExtractor::new(&config).expect("the default config compiles")
}

/// (kind, text, value) of every entity found.
fn found(text: &str) -> Vec<(EntityKind, String, String)> {
    extractor()
        .extract(text, reference())
        .into_iter()
        .map(|e| (e.kind, e.text, e.value))
        .collect()
}

fn one(text: &str) -> (EntityKind, String, String) {
    let all = found(text);
    assert_eq!(all.len(), 1, "{text}: {all:?}");
    all.into_iter().next().expect("one entity")
}

fn value(text: &str, kind: EntityKind) -> String {
    let (k, _, v) = one(text);
    assert_eq!(k, kind, "{text}");
    v
}

#[test]
fn ids_by_the_default_patterns() {
    use EntityKind::Id;
    assert_eq!(value("my ride RIDE-12345 was late", Id), "RIDE-12345");
    assert_eq!(value("trip r-99120 please", Id), "R-99120");
    assert_eq!(value("about order #5521", Id), "ORDER-5521");
    assert_eq!(value("ticket 7781 is open", Id), "TICKET-7781");
    assert_eq!(value("see TK-3390", Id), "TK-3390");
    assert_eq!(value("ref BK-20931", Id), "BK-20931");
    let e = extractor().extract("order 5521", reference());
    assert_eq!(e[0].tag.as_deref(), Some("order"));
    assert!(
        found("a ride of 12 minutes")
            .iter()
            .all(|(k, _, _)| *k != Id)
    );
}

#[test]
fn id_patterns_are_configurable_and_checked() {
    let config = EntityConfig {
        id_patterns: vec![IdPattern {
            name: "invoice".into(),
            pattern: r"\bINV[0-9]{4}\b".into(),
        }],
        ..EntityConfig::default()
    };
    let x = EntityExtractor::new(&config).expect("compiles");
    let e = x.extract("invoice INV2024 and RIDE-12345", reference());
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].tag.as_deref(), e[0].value.as_str()),
        (Some("invoice"), "INV2024")
    );
    let bad = EntityConfig {
        id_patterns: vec![IdPattern {
            name: "broken".into(),
            pattern: "(".into(),
        }],
        ..EntityConfig::default()
    };
    let err = EntityExtractor::new(&bad).expect_err("unbalanced");
    assert!(err.to_string().contains("broken"), "{err}");
}

#[test]
fn emails_are_lowercased() {
    use EntityKind::Email;
    assert_eq!(
        value("write to Ana.Silva+rides@Example.co.uk.", Email),
        "ana.silva+rides@example.co.uk"
    );
    assert!(found("not an email: a@b or @home").is_empty());
}

#[test]
fn phones_with_and_without_a_country() {
    use EntityKind::Phone;
    assert_eq!(value("call +44 20 7946 0958 now", Phone), "+442079460958");
    assert_eq!(value("or 0044 20 7946 0958", Phone), "+442079460958");
    assert_eq!(value("my number is (212) 555-1234", Phone), "2125551234");
    assert_eq!(value("text 07946095811", Phone), "07946095811");
    let uk = EntityConfig {
        default_calling_code: Some(44),
        ..EntityConfig::default()
    };
    let x = EntityExtractor::new(&uk).expect("compiles");
    assert_eq!(
        x.extract("020 7946 0958", reference())[0].value,
        "+442079460958"
    );
    assert!(
        found("I waited 1234567 years").is_empty(),
        "seven bare digits are no phone"
    );
}

#[test]
fn money_with_symbols_codes_and_words() {
    use EntityKind::Money;
    assert_eq!(value("charged $12.50 twice", Money), "12.50 USD");
    assert_eq!(value("it was 12,50 € in total", Money), "12.50 EUR");
    assert_eq!(value("about 30 EUR", Money), "30 EUR");
    assert_eq!(value("USD 5 extra", Money), "5 USD");
    assert_eq!(value("£1,234.99 for that?", Money), "1234.99 GBP");
    assert_eq!(value("1.234,56€", Money), "1234.56 EUR");
    assert_eq!(value("twenty? no, 20 dollars", Money), "20 USD");
    assert!(
        found("I tried 5 times").is_empty(),
        "lowercase codes are words"
    );
}

#[test]
fn absolute_dates_and_times() {
    use EntityKind::*;
    assert_eq!(value("on 2026-03-03 please", Date), "2026-03-03");
    assert_eq!(
        value("at 2026-03-03T17:05", DateTime),
        "2026-03-03T17:05:00"
    );
    assert_eq!(value("since March 3rd", Date), "2026-03-03");
    assert_eq!(value("a charge on 3 March", Date), "2026-03-03");
    assert_eq!(value("Dec 1, 2025 it started", Date), "2025-12-01");
    // From 22 November 2026 a date without a year is at most two months ahead.
    assert_eq!(value("due January 5", Date), "2027-01-05");
    assert_eq!(value("on 03/04/2026", Date), "2026-04-03");
    assert_eq!(value("at 5pm", Time), "17:00");
    assert_eq!(value("at 12:30 am", Time), "00:30");
    assert_eq!(value("by 17:45", Time), "17:45");
    assert_eq!(value("around noon", Time), "12:00");
    assert!(
        found("on 2026-02-30 or 31/02/2026").is_empty(),
        "no such days"
    );
    let us = EntityConfig {
        day_first: false,
        ..EntityConfig::default()
    };
    let x = EntityExtractor::new(&us).expect("compiles");
    assert_eq!(x.extract("03/04/2026", reference())[0].value, "2026-03-04");
}

#[test]
fn relative_dates_resolve_against_the_reference() {
    use EntityKind::*;
    // The reference is Sunday 2026-11-22 10:30.
    assert_eq!(value("yesterday", Date), "2026-11-21");
    assert_eq!(value("the day before yesterday", Date), "2026-11-20");
    assert_eq!(value("Tomorrow", Date), "2026-11-23");
    assert_eq!(value("last Monday", Date), "2026-11-16");
    assert_eq!(value("next Monday", Date), "2026-11-23");
    assert_eq!(value("last Sunday", Date), "2026-11-15");
    assert_eq!(value("on Friday", Date), "2026-11-20");
    assert_eq!(value("2 days ago", Date), "2026-11-20");
    assert_eq!(value("a week ago", Date), "2026-11-15");
    assert_eq!(value("three months ago", Date), "2026-08-22");
    assert_eq!(value("an hour ago", DateTime), "2026-11-22T09:30:00");
    assert_eq!(value("in 45 minutes", DateTime), "2026-11-22T11:15:00");
    assert_eq!(value("tomorrow at 5pm", DateTime), "2026-11-23T17:00:00");
    assert_eq!(value("5:30 pm on Friday", DateTime), "2026-11-20T17:30:00");
    assert_eq!(value("March 3, 18:00", DateTime), "2026-03-03T18:00:00");
}

#[test]
fn urls_and_gazetteers() {
    use EntityKind::*;
    assert_eq!(
        value("see https://Help.Example.com/a?b=1.", Url),
        "https://help.example.com/a?b=1"
    );
    assert_eq!(
        value("(www.example.org/faq)", Url),
        "http://www.example.org/faq"
    );
    assert_eq!(value("flying to são paulo?", Gazetteer), "São Paulo");
    assert_eq!(value("I'm in NEW YORK", Gazetteer), "New York");
    assert!(
        found("Lisbonne is not Lisbon's twin")
            .iter()
            .any(|(_, t, _)| t == "Lisbon")
    );
    assert!(
        !found("Lisbonne").iter().any(|(k, _, _)| *k == Gazetteer),
        "whole words only"
    );
}

#[test]
fn overlaps_go_to_the_most_specific_kind() {
    use EntityKind::*;
    // The URL holds an email-like part and a date; the date-time holds a date and a time.
    let all = found("https://x.com/u/a@b.com/2026-01-02 and 2026-01-02 17:00, RIDE-12345");
    let kinds: Vec<EntityKind> = all.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(kinds, vec![Url, DateTime, Id], "{all:?}");
    // An ISO date is no phone number.
    assert_eq!(one("2026-11-22 12").0, Date);
}

/// Checks what every result must satisfy, whatever the input.
fn well_formed(text: &str, entities: &[Entity]) {
    for e in entities {
        assert!(e.start < e.end, "{e:?}");
        assert!(
            text.is_char_boundary(e.start) && text.is_char_boundary(e.end),
            "{e:?}"
        );
        assert_eq!(&text[e.start..e.end], e.text);
    }
    for pair in entities.windows(2) {
        assert!(pair[0].end <= pair[1].start, "sorted, no overlap: {pair:?}");
    }
}

/// Filler words that are no entity: consonants only.
fn filler() -> impl Strategy<Value = String> {
    "[bcdfghjklmnpqrstvwxz]{1,7}( [bcdfghjklmnpqrstvwxz]{1,7}){0,4}"
}

/// An entity as written, its kind and the value it must normalise to.
fn written_entity() -> impl Strategy<Value = (String, EntityKind, String)> {
    prop_oneof![
        ("[a-z]{1,8}", "[a-z]{1,8}", "[a-z]{2,4}").prop_map(|(u, d, t)| {
            let text = format!("{}@{d}.{t}", u.to_uppercase());
            (text, EntityKind::Email, format!("{u}@{d}.{t}"))
        }),
        (100u32..999_999).prop_map(|n| (format!("ride-{n}"), EntityKind::Id, format!("RIDE-{n}"))),
        (0u32..100_000, 0u32..100).prop_map(|(a, c)| {
            (
                format!("€{a},{c:02}"),
                EntityKind::Money,
                format!("{a}.{c:02} EUR"),
            )
        }),
        (1u32..99, 0u32..10_000_000).prop_map(|(cc, n)| {
            let text = format!("+{cc} 20 {n:07}");
            (text, EntityKind::Phone, format!("+{cc}20{n:07}"))
        }),
        (1990i32..2100, 1u32..13, 1u32..29).prop_map(|(y, m, d)| {
            let iso = format!("{y:04}-{m:02}-{d:02}");
            (iso.clone(), EntityKind::Date, iso)
        }),
        (1u32..60).prop_map(|n| {
            let date = reference().date() - chrono::Duration::days(i64::from(n));
            let text = format!("{n} days ago");
            (text, EntityKind::Date, date.format("%Y-%m-%d").to_string())
        }),
        "[a-z]{1,10}".prop_map(|p| {
            let url = format!("https://example.com/{p}");
            (url.clone(), EntityKind::Url, url)
        }),
    ]
}

proptest! {
    #[test]
    fn any_text_gives_well_formed_results(text in any::<String>()) {
        let entities = extractor().extract(&text, reference());
        well_formed(&text, &entities);
    }

    #[test]
    fn text_made_of_entity_characters_gives_well_formed_results(
        text in "[0-9a-zA-Z@$€£.,:/+()# -]{0,60}"
    ) {
        let entities = extractor().extract(&text, reference());
        well_formed(&text, &entities);
    }

    #[test]
    fn an_entity_amid_filler_is_found_with_its_value(
        before in filler(),
        after in filler(),
        (written, kind, normalised) in written_entity(),
    ) {
        let text = format!("{before} {written} {after}");
        let entities = extractor().extract(&text, reference());
        well_formed(&text, &entities);
        prop_assert_eq!(entities.len(), 1, "{:?}", entities);
        let e = &entities[0];
        prop_assert_eq!(e.kind, kind);
        prop_assert_eq!(&e.value, &normalised);
        prop_assert_eq!(e.start, before.len() + 1);
        prop_assert_eq!(&e.text, &written);
    }
}
