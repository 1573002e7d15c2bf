use proptest::prelude::*;

use super::rule::{ActionSpec, ConditionSpec, RuleSpec, check};
use super::*;

fn shipped_rules() -> Vec<Rule> {
    let text = include_str!("../../knowledge-base/escalation-rules.yaml");
    parse_rules_yaml(text).expect("the shipped rules are valid")
}

fn fired(facts: &Facts<'_>) -> Vec<String> {
    evaluate(&shipped_rules(), facts)
        .into_iter()
        .map(|f| f.rule)
        .collect()
}

#[test]
fn the_shipped_rules_cover_the_default_cases() {
    let asks = Facts {
        text: "can I talk to a human please",
        intent: Some("human_agent"),
        confidence: 0.9,
        sentiment: 0.0,
        ..Facts::default()
    };
    assert_eq!(fired(&asks), ["visitor-asks-for-human"]);

    let by_keyword = Facts {
        text: "I want a REAL PERSON.",
        intent: Some("refund_request"),
        ..Facts::default()
    };
    assert_eq!(fired(&by_keyword), ["visitor-asks-for-human"]);

    let safety = Facts {
        text: "the driver was driving drunk",
        intent: Some("safety_incident"),
        ..Facts::default()
    };
    let firings = evaluate(&shipped_rules(), &safety);
    assert_eq!(firings[0].rule, "safety");
    assert!(firings[0].actions.contains(&Action::Escalate {
        priority: 3,
        skill: Some("safety".into())
    }));

    let lost = Facts {
        consecutive_fallbacks: 2,
        ..Facts::default()
    };
    assert_eq!(fired(&lost), ["repeated-fallbacks"]);

    let first_complaint = Facts {
        sentiment: -0.8,
        message_count: 1,
        ..Facts::default()
    };
    assert!(
        fired(&first_complaint).is_empty(),
        "the bot answers a first complaint"
    );
    let angry = Facts {
        sentiment: -0.8,
        message_count: 2,
        ..Facts::default()
    };
    assert_eq!(fired(&angry), ["frustrated-visitor"]);

    let history = [0.3, -0.1, -0.5];
    let souring = Facts {
        sentiment: -0.5,
        sentiment_history: &history,
        ..Facts::default()
    };
    let firings = evaluate(&shipped_rules(), &souring);
    assert_eq!(firings.len(), 1);
    assert!(
        firings[0].reason.contains("falling"),
        "{}",
        firings[0].reason
    );

    let calm = Facts {
        text: "how do I add a card",
        intent: Some("payment_methods"),
        confidence: 0.95,
        sentiment: 0.1,
        sentiment_history: &[0.2, 0.1, 0.1],
        consecutive_fallbacks: 1,
        ..Facts::default()
    };
    assert!(fired(&calm).is_empty());
}

#[test]
fn keywords_match_whole_words_only() {
    let rule = parse_rule(br#"{"name":"k","when":{"keywords":["refund"]},"then":[{"tag":"x"}]}"#)
        .expect("valid");
    let hit = |text| {
        !evaluate(
            std::slice::from_ref(&rule),
            &Facts {
                text,
                ..Facts::default()
            },
        )
        .is_empty()
    };
    assert!(hit("Refund, please"));
    assert!(hit("i want a refund"));
    assert!(!hit("refunds are slow"));
    assert!(!hit("prerefund"));
}

#[test]
fn bad_rules_name_the_field_and_the_reason() {
    let cases: [(&[u8], &str, &str); 7] = [
        (br#"{"name":"a","when":{"confidence_below":1.5},"then":[{"tag":"x"}]}"#, "when.confidence_below", "between 0 and 1"),
        (br#"{"name":"a","when":{"any":[{"out_of_scope":true},{"regex":"(unclosed"}]},"then":[{"tag":"x"}]}"#, "when.any[1].regex", "not a valid regex"),
        (br#"{"name":"a","when":{"all":[]},"then":[{"tag":"x"}]}"#, "when.all", "at least one"),
        (br#"{"name":"a","when":{"out_of_scope":true},"then":[]}"#, "then", "at least one action"),
        (br#"{"name":"a","when":{"out_of_scope":true},"then":[{"escalate":{"priority":9}}]}"#, "then[0].escalate.priority", "priority"),
        (br#"{"name":"Bad Name","when":{"out_of_scope":true},"then":[{"tag":"x"}]}"#, "name", "characters"),
        (br#"{"name":"a","when":{"sentiment_trend_below":{"slope":-0.2,"over_last":1}},"then":[{"tag":"x"}]}"#, "when.sentiment_trend_below.over_last", "between 2 and 50"),
    ];
    for (json, field, reason) in cases {
        let err = parse_rule(json).expect_err("invalid rule");
        assert_eq!(err.field, field, "{err}");
        assert!(err.reason.contains(reason), "{err}");
    }
    let err = parse_rule(br#"{"name":"a","when":{"mood_below":1},"then":[{"tag":"x"}]}"#)
        .expect_err("unknown condition");
    assert_eq!(err.field, "when");
    assert!(err.reason.contains("mood_below"), "{err}");
    let err = parse_rule(b"{not json").expect_err("syntax");
    assert_eq!(err.field, "rule");
}

#[test]
fn duplicate_names_in_a_seed_file_are_refused() {
    let yaml = "rules:\n  - {name: a, when: {out_of_scope: true}, then: [{tag: x}]}\n  - {name: a, when: {out_of_scope: false}, then: [{tag: y}]}\n";
    let err = parse_rules_yaml(yaml).expect_err("duplicate");
    assert_eq!(err.field, "rules[1].name");
}

#[test]
fn trend_slope_is_the_least_squares_slope() {
    assert_eq!(trend_slope(&[0.0, 0.5], 3), None);
    let slope = trend_slope(&[9.0, 0.6, 0.4, 0.2], 3).expect("enough points");
    assert!((slope + 0.2).abs() < 1e-6, "{slope}");
    assert_eq!(trend_slope(&[0.1, 0.1, 0.1], 3), Some(0.0));
}

fn leaf() -> impl Strategy<Value = ConditionSpec> {
    prop_oneof![
        prop::sample::subsequence(vec!["a", "b", "c"], 1..3)
            .prop_map(|s| ConditionSpec::IntentIn(s.into_iter().map(String::from).collect())),
        (0.0f32..=1.0).prop_map(ConditionSpec::ConfidenceBelow),
        any::<bool>().prop_map(ConditionSpec::OutOfScope),
        (-1.0f32..=1.0).prop_map(ConditionSpec::SentimentBelow),
        ((-1.0f32..=1.0), 2usize..5)
            .prop_map(|(slope, over_last)| ConditionSpec::SentimentTrendBelow { slope, over_last }),
        (1u32..4).prop_map(ConditionSpec::ConsecutiveFallbacksAtLeast),
        prop::sample::select(vec!["refund", "human", "now"])
            .prop_map(|w| ConditionSpec::Keywords(vec![w.to_owned()])),
        prop::sample::select(vec!["[0-9]{3}", "^hi", "angry|upset"])
            .prop_map(|p| ConditionSpec::Regex(p.to_owned())),
        prop::sample::select(vec!["email", "order_id"])
            .prop_map(|k| ConditionSpec::EntityPresent(k.to_owned())),
        (1u32..6).prop_map(ConditionSpec::MessageCountAtLeast),
        (0u64..100).prop_map(ConditionSpec::WaitingLongerThanSecs),
    ]
}

fn condition() -> impl Strategy<Value = ConditionSpec> {
    leaf().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(ConditionSpec::All),
            prop::collection::vec(inner.clone(), 1..3).prop_map(ConditionSpec::Any),
            inner.prop_map(|c| ConditionSpec::Not(Box::new(c))),
        ]
    })
}

#[derive(Debug, Clone)]
struct OwnedFacts {
    text: String,
    intent: Option<String>,
    confidence: f32,
    out_of_scope: bool,
    sentiment_history: Vec<f32>,
    consecutive_fallbacks: u32,
    entity_kinds: Vec<&'static str>,
    message_count: u32,
    waiting_secs: u64,
}

impl OwnedFacts {
    fn facts(&self) -> Facts<'_> {
        Facts {
            text: &self.text,
            intent: self.intent.as_deref(),
            confidence: self.confidence,
            out_of_scope: self.out_of_scope,
            sentiment: self.sentiment_history.last().copied().unwrap_or(0.0),
            sentiment_history: &self.sentiment_history,
            consecutive_fallbacks: self.consecutive_fallbacks,
            entity_kinds: &self.entity_kinds,
            visitor_attributes: None,
            message_count: self.message_count,
            waiting_secs: self.waiting_secs,
        }
    }
}

fn facts() -> impl Strategy<Value = OwnedFacts> {
    (
        "(hi|refund|human|now|angry|123| |x){0,6}",
        prop::option::of(prop::sample::select(vec!["a", "b", "c", "d"])),
        0.0f32..=1.0,
        any::<bool>(),
        prop::collection::vec(-1.0f32..=1.0, 0..6),
        0u32..4,
        prop::sample::subsequence(vec!["email", "order_id", "phone"], 0..3),
        1u32..8,
        0u64..200,
    )
        .prop_map(
            |(
                text,
                intent,
                confidence,
                out_of_scope,
                sentiment_history,
                consecutive_fallbacks,
                entity_kinds,
                message_count,
                waiting_secs,
            )| OwnedFacts {
                text,
                intent: intent.map(String::from),
                confidence,
                out_of_scope,
                sentiment_history,
                consecutive_fallbacks,
                entity_kinds,
                message_count,
                waiting_secs,
            },
        )
}

fn rule_of(when: ConditionSpec) -> Rule {
    check(RuleSpec {
        name: "p".into(),
        description: None,
        enabled: true,
        when,
        then: vec![ActionSpec::Tag("t".into())],
    })
    .expect("generated conditions are valid")
}

fn holds(when: ConditionSpec, facts: &Facts<'_>) -> bool {
    !evaluate(&[rule_of(when)], facts).is_empty()
}

proptest! {
    #[test]
    fn combinators_obey_boolean_laws(a in condition(), b in condition(), f in facts()) {
        let facts = f.facts();
        let (ha, hb) = (holds(a.clone(), &facts), holds(b.clone(), &facts));
        prop_assert_eq!(holds(ConditionSpec::All(vec![a.clone(), b.clone()]), &facts), ha && hb);
        prop_assert_eq!(holds(ConditionSpec::Any(vec![a.clone(), b.clone()]), &facts), ha || hb);
        prop_assert_eq!(holds(ConditionSpec::Not(Box::new(a.clone())), &facts), !ha);
        let de_morgan = ConditionSpec::Any(vec![
            ConditionSpec::Not(Box::new(a.clone())),
            ConditionSpec::Not(Box::new(b.clone())),
        ]);
        prop_assert_eq!(holds(de_morgan, &facts), !(ha && hb));
    }

    #[test]
    fn a_rule_survives_a_round_trip_through_json(when in condition(), f in facts()) {
        let rule = rule_of(when.clone());
        let json = serde_json::to_vec(&rule.spec).expect("serialises");
        let back = parse_rule(&json).expect("what was valid stays valid");
        prop_assert_eq!(&back.spec, &rule.spec);
        let facts = f.facts();
        prop_assert_eq!(evaluate(&[back], &facts), evaluate(&[rule], &facts));
    }

    #[test]
    fn a_firing_always_has_a_reason_and_disabled_rules_never_fire(when in condition(), f in facts()) {
        let mut rule = rule_of(when);
        let facts = f.facts();
        for firing in evaluate(std::slice::from_ref(&rule), &facts) {
            prop_assert!(!firing.reason.is_empty());
        }
        rule.spec.enabled = false;
        prop_assert!(evaluate(&[rule], &facts).is_empty());
    }
}

#[test]
fn a_condition_names_the_intents_it_tests_for_at_any_depth() {
    let rule = parse_rule(
        br#"{"name":"n","when":{"any":[{"keywords":["refund"]},{"all":[{"not":{"intent_in":["lost_item","refund_request"]}}]}]},"then":[{"tag":"t"}]}"#,
    )
    .expect("a valid rule");
    assert!(rule.names_intent("lost_item"));
    assert!(rule.names_intent("refund_request"));
    assert!(!rule.names_intent("refund"), "keywords are not intents");
    let asks = shipped_rules()
        .into_iter()
        .find(|r| r.name() == "visitor-asks-for-human")
        .expect("a shipped rule");
    assert!(asks.names_intent("human_agent"));
}

#[test]
fn intents_a_rule_tests_for_must_be_known() {
    let rule = parse_rule(
        br#"{"name":"n","when":{"any":[{"keywords":["x"]},{"not":{"intent_in":["lost_item","no_such_intent"]}}]},"then":[{"tag":"t"}]}"#,
    )
    .expect("a valid rule");
    let err = rule
        .check_intents(|name| name == "lost_item")
        .expect_err("an unknown intent");
    assert_eq!(err.field, "when.any[1].not.intent_in[1]");
    assert!(err.reason.contains("`no_such_intent`"), "{err}");
    assert!(rule.check_intents(|_| true).is_ok());
}
