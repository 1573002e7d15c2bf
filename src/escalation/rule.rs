use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// Deepest nesting of `all` / `any` / `not` accepted in one rule.
const MAX_DEPTH: usize = 8;
/// Largest compiled regex accepted, against patterns that would make every message slow.
const REGEX_SIZE_LIMIT: usize = 1 << 16;
pub const MAX_PRIORITY: u8 = 3;

/// A rule as written by an admin: the serde shape of the YAML seed file and of the REST API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    pub when: ConditionSpec,
    pub then: Vec<ActionSpec>,
}

fn enabled_by_default() -> bool {
    true
}

/// One condition, externally tagged: `{ "sentiment_below": -0.5 }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ConditionSpec {
    All(Vec<ConditionSpec>),
    Any(Vec<ConditionSpec>),
    Not(Box<ConditionSpec>),
    IntentIn(Vec<String>),
    ConfidenceBelow(f32),
    OutOfScope(bool),
    SentimentBelow(f32),
    SentimentTrendBelow {
        slope: f32,
        over_last: usize,
    },
    ConsecutiveFallbacksAtLeast(u32),
    Keywords(Vec<String>),
    Regex(String),
    EntityPresent(String),
    VisitorAttribute {
        key: String,
        equals: serde_json::Value,
    },
    MessageCountAtLeast(u32),
    WaitingLongerThanSecs(u64),
}

/// One action, externally tagged: `{ "escalate": { "priority": 2, "skill": "billing" } }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionSpec {
    Escalate {
        #[serde(default)]
        priority: u8,
        #[serde(default)]
        skill: Option<String>,
    },
    Tag(String),
    SetPriority(u8),
    SystemMessage(String),
}

/// Why a rule was refused: the field, as a path into the rule, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{field}: {reason}")]
pub struct RuleError {
    pub field: String,
    pub reason: String,
}

impl RuleError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A checked condition: every threshold in range, every set non-empty, every regex compiled.
#[derive(Clone, Debug)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    IntentIn(Vec<String>),
    ConfidenceBelow(f32),
    OutOfScope(bool),
    SentimentBelow(f32),
    SentimentTrendBelow {
        slope: f32,
        over_last: usize,
    },
    ConsecutiveFallbacksAtLeast(u32),
    /// Lower-cased keywords, matched as whole words or phrases.
    Keywords(Vec<String>),
    Regex(Regex),
    EntityPresent(String),
    VisitorAttribute {
        key: String,
        equals: serde_json::Value,
    },
    MessageCountAtLeast(u32),
    WaitingLongerThanSecs(u64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Action {
    Escalate { priority: u8, skill: Option<String> },
    Tag { tag: String },
    SetPriority { priority: u8 },
    SystemMessage { text: String },
}

/// A rule that passed [`parse_rule`]. Keeps its spec, which is what is stored and shown.
#[derive(Clone, Debug)]
pub struct Rule {
    pub spec: RuleSpec,
    pub condition: Condition,
    pub actions: Vec<Action>,
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether the rule's condition tests for the intent `name` anywhere in it.
    pub fn names_intent(&self, name: &str) -> bool {
        self.check_intents(|other| other != name).is_err()
    }

    /// Refuses the rule when an `intent_in` names an intent `known` does not have: such a
    /// condition could never hold. The error names the first such name's field.
    pub fn check_intents(&self, known: impl Fn(&str) -> bool) -> Result<(), RuleError> {
        unknown_intent(&self.spec.when, "when", &known).map_or(Ok(()), Err)
    }
}

fn unknown_intent(
    spec: &ConditionSpec,
    at: &str,
    known: &impl Fn(&str) -> bool,
) -> Option<RuleError> {
    let within = |items: &[ConditionSpec], key: &str| {
        items
            .iter()
            .enumerate()
            .find_map(|(i, c)| unknown_intent(c, &format!("{at}.{key}[{i}]"), known))
    };
    match spec {
        ConditionSpec::All(items) => within(items, "all"),
        ConditionSpec::Any(items) => within(items, "any"),
        ConditionSpec::Not(inner) => unknown_intent(inner, &format!("{at}.not"), known),
        ConditionSpec::IntentIn(names) => names.iter().enumerate().find_map(|(i, name)| {
            (!known(name)).then(|| {
                RuleError::new(
                    format!("{at}.intent_in[{i}]"),
                    format!("there is no intent `{name}` in the knowledge base"),
                )
            })
        }),
        _ => None,
    }
}

/// Parses a rule from JSON, naming the field of any error (`when.any[1].regex`).
pub fn parse_rule(json: &[u8]) -> Result<Rule, RuleError> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| RuleError::new("rule", e.to_string()))?;
    parse_rule_value(value)
}

fn parse_rule_value(value: serde_json::Value) -> Result<Rule, RuleError> {
    let spec: RuleSpec = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path == "?" {
            "rule".to_owned()
        } else {
            path
        };
        RuleError::new(field, e.into_inner().to_string())
    })?;
    check(spec)
}

/// Parses a seed file `rules: [...]`, checking every rule and refusing duplicate names.
pub fn parse_rules_yaml(text: &str) -> Result<Vec<Rule>, RuleError> {
    let file: serde_json::Value =
        serde_yaml_ng::from_str(text).map_err(|e| RuleError::new("rules", e.to_string()))?;
    let Some(specs) = file.get("rules").and_then(|r| r.as_array()) else {
        return Err(RuleError::new("rules", "the file needs a `rules:` list"));
    };
    let mut rules: Vec<Rule> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let at = |e: RuleError| RuleError::new(format!("rules[{i}].{}", e.field), e.reason);
        let rule = parse_rule_value(spec.clone()).map_err(at)?;
        if rules.iter().any(|r| r.spec.name == rule.spec.name) {
            return Err(RuleError::new(
                format!("rules[{i}].name"),
                format!("`{}` is used by an earlier rule", rule.spec.name),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// Turns a spec into a checked rule.
pub fn check(spec: RuleSpec) -> Result<Rule, RuleError> {
    check_name(&spec.name)?;
    let condition = check_condition(&spec.when, "when", 0)?;
    if spec.then.is_empty() {
        return Err(RuleError::new("then", "a rule needs at least one action"));
    }
    let actions = spec
        .then
        .iter()
        .enumerate()
        .map(|(i, a)| check_action(a, &format!("then[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(Rule {
        spec,
        condition,
        actions,
    })
}

fn check_name(name: &str) -> Result<(), RuleError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(RuleError::new(
            "name",
            "1–64 characters from a–z, 0–9, `-` and `_`",
        ))
    }
}

fn check_condition(spec: &ConditionSpec, at: &str, depth: usize) -> Result<Condition, RuleError> {
    if depth > MAX_DEPTH {
        return Err(RuleError::new(
            at,
            format!("nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let list = |items: &[ConditionSpec], key: &str| -> Result<Vec<Condition>, RuleError> {
        if items.is_empty() {
            return Err(RuleError::new(
                format!("{at}.{key}"),
                "needs at least one condition",
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, c)| check_condition(c, &format!("{at}.{key}[{i}]"), depth + 1))
            .collect()
    };
    let field = |key: &str| format!("{at}.{key}");
    Ok(match spec {
        ConditionSpec::All(items) => Condition::All(list(items, "all")?),
        ConditionSpec::Any(items) => Condition::Any(list(items, "any")?),
        ConditionSpec::Not(inner) => {
            Condition::Not(Box::new(check_condition(inner, &field("not"), depth + 1)?))
        }
        ConditionSpec::IntentIn(names) => {
            if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
                return Err(RuleError::new(
                    field("intent_in"),
                    "needs one or more intent names",
                ));
            }
            Condition::IntentIn(names.clone())
        }
        ConditionSpec::ConfidenceBelow(x) => {
            Condition::ConfidenceBelow(in_range(*x, 0.0, 1.0, &field("confidence_below"))?)
        }
        ConditionSpec::OutOfScope(b) => Condition::OutOfScope(*b),
        ConditionSpec::SentimentBelow(x) => {
            Condition::SentimentBelow(in_range(*x, -1.0, 1.0, &field("sentiment_below"))?)
        }
        ConditionSpec::SentimentTrendBelow { slope, over_last } => {
            let key = field("sentiment_trend_below");
            if !(2..=50).contains(over_last) {
                return Err(RuleError::new(
                    format!("{key}.over_last"),
                    "between 2 and 50 messages",
                ));
            }
            Condition::SentimentTrendBelow {
                slope: in_range(*slope, -2.0, 2.0, &format!("{key}.slope"))?,
                over_last: *over_last,
            }
        }
        ConditionSpec::ConsecutiveFallbacksAtLeast(n) => Condition::ConsecutiveFallbacksAtLeast(
            at_least_one(*n, &field("consecutive_fallbacks_at_least"))?,
        ),
        ConditionSpec::Keywords(words) => {
            let words: Vec<String> = words.iter().map(|w| w.trim().to_lowercase()).collect();
            if words.is_empty() || words.iter().any(String::is_empty) {
                return Err(RuleError::new(
                    field("keywords"),
                    "needs one or more non-empty keywords",
                ));
            }
            Condition::Keywords(words)
        }
        ConditionSpec::Regex(pattern) => Condition::Regex(
            RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| RuleError::new(field("regex"), format!("not a valid regex: {e}")))?,
        ),
        ConditionSpec::EntityPresent(kind) => {
            if kind.trim().is_empty() {
                return Err(RuleError::new(
                    field("entity_present"),
                    "needs an entity kind",
                ));
            }
            Condition::EntityPresent(kind.clone())
        }
        ConditionSpec::VisitorAttribute { key, equals } => {
            if key.trim().is_empty() {
                return Err(RuleError::new(
                    field("visitor_attribute.key"),
                    "needs an attribute name",
                ));
            }
            Condition::VisitorAttribute {
                key: key.clone(),
                equals: equals.clone(),
            }
        }
        ConditionSpec::MessageCountAtLeast(n) => {
            Condition::MessageCountAtLeast(at_least_one(*n, &field("message_count_at_least"))?)
        }
        ConditionSpec::WaitingLongerThanSecs(s) => Condition::WaitingLongerThanSecs(*s),
    })
}

fn check_action(spec: &ActionSpec, at: &str) -> Result<Action, RuleError> {
    let priority = |p: u8, key: &str| {
        if p <= MAX_PRIORITY {
            Ok(p)
        } else {
            Err(RuleError::new(
                format!("{at}.{key}"),
                format!("priority is 0 (normal) to {MAX_PRIORITY} (urgent)"),
            ))
        }
    };
    Ok(match spec {
        ActionSpec::Escalate { priority: p, skill } => {
            if skill.as_ref().is_some_and(|s| s.trim().is_empty()) {
                return Err(RuleError::new(
                    format!("{at}.escalate.skill"),
                    "empty skill name",
                ));
            }
            Action::Escalate {
                priority: priority(*p, "escalate.priority")?,
                skill: skill.clone(),
            }
        }
        ActionSpec::Tag(tag) => {
            if tag.trim().is_empty() || tag.len() > 64 {
                return Err(RuleError::new(format!("{at}.tag"), "1–64 characters"));
            }
            Action::Tag {
                tag: tag.trim().to_owned(),
            }
        }
        ActionSpec::SetPriority(p) => Action::SetPriority {
            priority: priority(*p, "set_priority")?,
        },
        ActionSpec::SystemMessage(text) => {
            if text.trim().is_empty() || text.len() > 2000 {
                return Err(RuleError::new(
                    format!("{at}.system_message"),
                    "1–2000 characters",
                ));
            }
            Action::SystemMessage { text: text.clone() }
        }
    })
}

fn in_range(x: f32, lo: f32, hi: f32, field: &str) -> Result<f32, RuleError> {
    if x.is_finite() && (lo..=hi).contains(&x) {
        Ok(x)
    } else {
        Err(RuleError::new(
            field,
            format!("must be between {lo} and {hi}, got {x}"),
        ))
    }
}

fn at_least_one(n: u32, field: &str) -> Result<u32, RuleError> {
    if n >= 1 {
        Ok(n)
    } else {
        Err(RuleError::new(field, "must be at least 1"))
    }
}
