//! Label selectors: the kubectl string syntax, the structured API form, and matching.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde_json::Value;

use super::SelectorError;
use super::parser::parse;
use super::validation::{validate_key, validate_value};

/// How a requirement relates a label key to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key=value` or `key==value`.
    Equals,
    /// `key!=value`: the key is absent or has another value.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`: the key is absent or has none of the values.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>n`: the label parses as an integer greater than `n`.
    GreaterThan,
    /// `key<n`: the label parses as an integer less than `n`.
    LessThan,
}

/// One clause of a label selector; all clauses must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The relation.
    pub operator: Operator,
    /// The values, sorted and unique (empty for `Exists`/`DoesNotExist`).
    pub values: BTreeSet<String>,
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl Requirement {
    /// Builds a requirement, validating it like apimachinery's `NewRequirement`.
    pub fn new(
        key: &str,
        operator: Operator,
        values: BTreeSet<String>,
    ) -> Result<Requirement, String> {
        let count = values.len();
        let problem = match operator {
            Operator::In | Operator::NotIn if count == 0 => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::NotEquals if count != 1 => {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if count != 0 => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if count != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            Operator::GreaterThan | Operator::LessThan
                if values.iter().any(|v| v.parse::<i64>().is_err()) =>
            {
                Some("for 'Gt', 'Lt' operators, the value must be an integer")
            }
            _ => None,
        };
        if let Some(problem) = problem {
            let shown: Vec<&String> = values.iter().collect();
            return Err(format!("values: Invalid value: {shown:?}: {problem}"));
        }
        validate_key(key)?;
        for value in &values {
            validate_value(key, value)?;
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let got = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => got.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => got.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => got.is_some(),
            Operator::DoesNotExist => got.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(got), Some(want)) = (
                    got.and_then(|v| v.parse::<i64>().ok()),
                    self.values
                        .iter()
                        .next()
                        .and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    got > want
                } else {
                    got < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        let first = values.first().copied().unwrap_or_default();
        match self.operator {
            Operator::Equals => write!(f, "{}={first}", self.key),
            Operator::NotEquals => write!(f, "{}!={first}", self.key),
            Operator::GreaterThan => write!(f, "{}>{first}", self.key),
            Operator::LessThan => write!(f, "{}<{first}", self.key),
            Operator::In => write!(f, "{} in ({})", self.key, values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, values.join(",")),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

impl LabelSelector {
    /// Builds a selector from requirements (sorted by key, as apimachinery does).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> LabelSelector {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements }
    }

    /// Parses the kubectl `-l` / `labelSelector=` syntax.
    pub fn parse(input: &str) -> Result<LabelSelector, SelectorError> {
        parse(input).map(LabelSelector::from_requirements)
    }

    /// Converts the structured `metav1.LabelSelector` of API objects; empty matches everything.
    pub fn from_k8s(selector: &meta::LabelSelector) -> Result<LabelSelector, SelectorError> {
        let invalid = SelectorError::InvalidRequirement;
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            let values = BTreeSet::from([value.clone()]);
            requirements.push(Requirement::new(key, Operator::Equals, values).map_err(invalid)?);
        }
        for expr in selector.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::InvalidOperator(other.to_string())),
            };
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            requirements.push(Requirement::new(&expr.key, operator, values).map_err(invalid)?);
        }
        Ok(LabelSelector::from_requirements(requirements))
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when the selector has no requirements (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every requirement matches `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches a JSON `metadata.labels` object (absent or non-object means no labels).
    pub fn matches_value(&self, labels: Option<&Value>) -> bool {
        if self.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = labels
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
        self.matches(&labels)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_operator() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("app>1", false),
            ("", true),
            ("  app  =  web  ,  tier in ( front , back )  ", true),
        ];
        for (s, want) in cases {
            assert_eq!(sel(s).matches(&l), want, "{s}");
        }
    }

    #[test]
    fn empty_values() {
        let l = labels(&[("a", "")]);
        assert!(sel("a=").matches(&l));
        assert!(sel("a=,b!=").matches(&l));
        assert!(sel("a in ()").matches(&l));
        assert!(sel("a in (,x)").matches(&l));
        assert_eq!(sel("a in (x,,y)").requirements()[0].values.len(), 3);
    }

    #[test]
    fn keywords_are_values_in_value_position() {
        let l = labels(&[("x", "in")]);
        assert!(sel("x=in").matches(&l));
        assert!(sel("x in (in,notin)").matches(&l));
    }

    #[test]
    fn errors_read_like_kubernetes() {
        let err = |s: &str| LabelSelector::parse(s).unwrap_err().to_string();
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(err("a,"), "found '', expected: identifier after ','");
        assert_eq!(
            err("=a"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("a in b"),
            "unable to parse requirement: found 'b' expected: '('"
        );
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            err("a in (b"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert!(
            err("-a=b")
                .starts_with("unable to parse requirement: Invalid value: \"-a\": name part")
        );
        assert!(err("a=b c d").contains("found 'c'"));
        assert!(err("a=-b").contains("[a]: Invalid value: \"-b\""));
        assert!(err("a>b").contains("must be an integer"));
        assert!(err("!a=b").contains("found '=', expected: ',' or 'end of string'"));
    }

    #[test]
    fn display_round_trips() {
        for s in ["a in (x,y),!b,c", "a!=b,c=d", "x notin (1,2)", "n>3"] {
            let parsed = sel(s);
            assert_eq!(sel(&parsed.to_string()), parsed, "{s}");
        }
        assert_eq!(sel("b=1,a in (y,x)").to_string(), "a in (x,y),b=1");
    }

    #[test]
    fn from_k8s_structured_selector() {
        let s: meta::LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "mid"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ]
        }))
        .unwrap();
        let s = LabelSelector::from_k8s(&s).unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "mid")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "mid"), ("legacy", "1")])));
        assert!(!s.matches(&labels(&[("app", "web")])));

        let empty = LabelSelector::from_k8s(&meta::LabelSelector::default()).unwrap();
        assert!(empty.is_empty());
        assert!(empty.matches_value(None));

        let bad: meta::LabelSelector = serde_json::from_value(json!({
            "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]
        }))
        .unwrap();
        assert_eq!(
            LabelSelector::from_k8s(&bad).unwrap_err().to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        let no_values: meta::LabelSelector = serde_json::from_value(json!({
            "matchExpressions": [{"key": "a", "operator": "In"}]
        }))
        .unwrap();
        assert!(
            LabelSelector::from_k8s(&no_values)
                .unwrap_err()
                .to_string()
                .contains("can't be empty")
        );
    }

    #[test]
    fn matches_json_labels() {
        let s = sel("app=web");
        assert!(s.matches_value(Some(&json!({"app": "web", "x": 1}))));
        assert!(!s.matches_value(Some(&json!({"app": "db"}))));
        assert!(!s.matches_value(None));
        assert!(sel("!app").matches_value(Some(&json!(null))));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = LabelSelector::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_selector_alphabet(s in "[a-c =!(),<>in\t/.-]{0,24}") {
            if let Ok(parsed) = LabelSelector::parse(&s) {
                // What parses prints back to something that parses the same.
                prop_assert_eq!(LabelSelector::parse(&parsed.to_string()).ok(), Some(parsed));
            }
        }
    }
}
