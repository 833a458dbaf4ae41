//! Field selectors: `field=value`, `field==value`, `field!=value` terms over indexed fields.

use std::fmt;

use serde_json::Value;

use super::SelectorError;

/// How a field requirement compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One `field<op>value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field label, e.g. `spec.nodeName`.
    pub field: String,
    /// The comparison.
    pub op: FieldOp,
    /// The unescaped value.
    pub value: String,
}

/// A conjunction of field requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Field labels every kind supports.
const METADATA_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// Field labels a built-in kind supports beyond `metadata.name` and `metadata.namespace`.
fn kind_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Secret" => &["type"],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "ReplicaSet" | "ReplicationController" => &["status.replicas"],
        "Job" => &["status.successful"],
        "CertificateSigningRequest" => &["spec.signerName"],
        _ => &[],
    }
}

/// Where a field label reads from, and what an absent value reads as.
fn field_source(field: &str) -> (&str, &'static str) {
    match field {
        "source" => ("source.component", ""),
        "spec.hostNetwork" | "spec.unschedulable" => (field, "false"),
        "status.replicas" | "status.successful" => (field, "0"),
        _ => (field, ""),
    }
}

/// The string form of a field of `obj`, as the apiserver's field-label conversion renders it.
fn field_value(obj: &Value, field: &str) -> String {
    let (path, default) = field_source(field);
    let found = path.split('.').try_fold(obj, |v, segment| v.get(segment));
    match found {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => default.to_string(),
    }
}

impl FieldSelector {
    /// Parses `a=b,c!=d` (values may escape `\,`, `\=` and `\\`).
    pub fn parse(input: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = split_terms(input);
        terms.sort();
        let mut requirements = Vec::new();
        for term in terms.iter().filter(|t| !t.is_empty()) {
            let Some((field, op, raw)) = split_term(term) else {
                return Err(SelectorError::InvalidFieldSelector(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                )));
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value: unescape(raw)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The requirements, sorted by their text.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when the selector has no requirements (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Fails with `field label not supported: <field>` for a field `kind` does not index.
    pub fn check_supported(&self, kind: &str) -> Result<(), SelectorError> {
        let extra = kind_fields(kind);
        match self.requirements.iter().find(|r| {
            !METADATA_FIELDS.contains(&r.field.as_str()) && !extra.contains(&r.field.as_str())
        }) {
            Some(r) => Err(SelectorError::UnsupportedField(r.field.clone())),
            None => Ok(()),
        }
    }

    /// Whether `obj` (of `kind`) satisfies every requirement; absent fields read as `""`
    /// (`false`/`0` for the boolean and counter fields), so `spec.nodeName=` selects unscheduled pods.
    pub fn matches(&self, obj: &Value, kind: &str) -> bool {
        self.requirements.iter().all(|r| {
            let supported = METADATA_FIELDS.contains(&r.field.as_str())
                || kind_fields(kind).contains(&r.field.as_str());
            let got = if supported {
                field_value(obj, &r.field)
            } else {
                String::new()
            };
            (got == r.value) == (r.op == FieldOp::Equals)
        })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                let op = if r.op == FieldOp::Equals { "=" } else { "!=" };
                format!("{}{op}{}", r.field, escape(&r.value))
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

/// Splits on commas not preceded by an escaping backslash.
fn split_terms(input: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            current.push(c);
            escaped = true;
        } else if c == ',' {
            terms.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    terms.push(current);
    terms
}

/// Splits a term at its first unescaped operator (`!=`, `==`, then `=`).
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        let rest = term.get(i..)?;
        for (op, kind) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if rest.starts_with(op) {
                return Some((term.get(..i)?, kind, rest.get(op.len()..)?));
            }
        }
    }
    None
}

fn unescape(raw: &str) -> Result<String, SelectorError> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                other => {
                    let seq: String = std::iter::once('\\').chain(other).collect();
                    return Err(SelectorError::InvalidFieldSelector(format!(
                        "invalid field selector: invalid escape sequence: {seq}"
                    )));
                }
            },
            ',' | '=' => {
                return Err(SelectorError::InvalidFieldSelector(format!(
                    "invalid field selector: unescaped character in value: {c}"
                )));
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn pod(node: Option<&str>, phase: &str) -> Value {
        let mut p = json!({
            "metadata": {"name": "p1", "namespace": "default"},
            "spec": {"restartPolicy": "Always", "hostNetwork": true},
            "status": {"phase": phase, "podIP": "10.0.0.1"}
        });
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    }

    #[test]
    fn parses_operators() {
        let s = parse("metadata.name=a,spec.nodeName!=n1,status.phase==Running");
        assert_eq!(s.requirements().len(), 3);
        assert_eq!(s.requirements()[0].field, "metadata.name");
        assert_eq!(s.requirements()[1].op, FieldOp::NotEquals);
        assert!(parse("").is_empty());
        assert!(parse(",").is_empty());
        assert_eq!(parse("a=").requirements()[0].value, "");
    }

    #[test]
    fn escapes() {
        let s = parse(r"metadata.name=a\,b\=c\\d");
        assert_eq!(s.requirements()[0].value, r"a,b=c\d");
        assert_eq!(parse(&s.to_string()), s);
        assert_eq!(
            FieldSelector::parse(r"a=b\x").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: ="
        );
    }

    #[test]
    fn term_without_operator_is_an_error() {
        assert_eq!(
            FieldSelector::parse("metadata.name")
                .unwrap_err()
                .to_string(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
    }

    #[test]
    fn matches_pods() {
        let scheduled = pod(Some("n1"), "Running");
        let pending = pod(None, "Pending");
        let unscheduled = parse("spec.nodeName=");
        assert!(unscheduled.matches(&pending, "Pod"));
        assert!(!unscheduled.matches(&scheduled, "Pod"));
        assert!(parse("spec.nodeName=n1,status.phase=Running").matches(&scheduled, "Pod"));
        assert!(parse("status.phase!=Succeeded,status.phase!=Failed").matches(&pending, "Pod"));
        assert!(parse("metadata.name=p1,metadata.namespace=default").matches(&pending, "Pod"));
        assert!(parse("spec.hostNetwork=true").matches(&pending, "Pod"));
        assert!(parse("status.podIP=10.0.0.1").matches(&pending, "Pod"));
        assert!(!parse("metadata.name=p2").matches(&pending, "Pod"));
    }

    #[test]
    fn defaults_for_absent_bool_and_counters() {
        assert!(parse("spec.unschedulable=false").matches(&json!({"spec": {}}), "Node"));
        assert!(
            parse("spec.unschedulable=true")
                .matches(&json!({"spec": {"unschedulable": true}}), "Node")
        );
        assert!(parse("status.replicas=0").matches(&json!({}), "ReplicaSet"));
        assert!(
            parse("status.replicas=3").matches(&json!({"status": {"replicas": 3}}), "ReplicaSet")
        );
        assert!(parse("status.successful=1").matches(&json!({"status": {"successful": 1}}), "Job"));
    }

    #[test]
    fn event_fields() {
        let ev = json!({
            "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "default"},
            "reason": "Scheduled",
            "source": {"component": "default-scheduler"},
            "type": "Normal"
        });
        let s = parse(
            "involvedObject.kind=Pod,involvedObject.name=p1,reason=Scheduled,source=default-scheduler,type=Normal",
        );
        assert!(s.check_supported("Event").is_ok());
        assert!(s.matches(&ev, "Event"));
        assert!(!parse("type=Warning").matches(&ev, "Event"));
    }

    #[test]
    fn supported_fields_per_kind() {
        assert!(
            parse("metadata.name=x,metadata.namespace=y")
                .check_supported("Widget")
                .is_ok()
        );
        assert_eq!(
            parse("spec.foo=x")
                .check_supported("Widget")
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.foo"
        );
        assert!(parse("spec.nodeName=x").check_supported("Pod").is_ok());
        assert!(parse("spec.nodeName=x").check_supported("Node").is_err());
        assert!(parse("type=Opaque").check_supported("Secret").is_ok());
        assert!(parse("type=Opaque").check_supported("ConfigMap").is_err());
        assert!(
            parse("status.phase=Active")
                .check_supported("Namespace")
                .is_ok()
        );
        assert!(
            parse("spec.unschedulable=true")
                .check_supported("Node")
                .is_ok()
        );
        assert!(
            parse("status.replicas=1")
                .check_supported("ReplicationController")
                .is_ok()
        );
        assert!(
            parse("spec.signerName=x")
                .check_supported("CertificateSigningRequest")
                .is_ok()
        );
    }

    #[test]
    fn unsupported_fields_never_match_a_value() {
        assert!(!parse("spec.foo=bar").matches(&json!({"spec": {"foo": "bar"}}), "Widget"));
        assert!(parse("spec.foo!=bar").matches(&json!({"spec": {"foo": "bar"}}), "Widget"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = FieldSelector::parse(&s);
        }

        #[test]
        fn display_round_trips(field in "[a-z.]{1,12}", value in "[a-z,=\\\\]{0,8}", neg in any::<bool>()) {
            let s = FieldSelector {
                requirements: vec![FieldRequirement {
                    field,
                    op: if neg { FieldOp::NotEquals } else { FieldOp::Equals },
                    value,
                }],
            };
            prop_assert_eq!(FieldSelector::parse(&s.to_string()).ok(), Some(s));
        }
    }
}
