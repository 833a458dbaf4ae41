//! One PolicyRule and whether it allows a request, as upstream's `rbac/validation/rule.go` (`RuleAllows`) matches it.

use serde_json::{Value, json};

use super::attributes::Attributes;

/// A PolicyRule of a Role or ClusterRole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

/// Matches everything in a list of verbs, groups, resources or URLs.
const ALL: &str = "*";

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

impl Rule {
    /// A rule from its JSON (unknown or mistyped fields are empty, and so match nothing).
    pub fn from_json(rule: &Value) -> Rule {
        Rule {
            verbs: strings(&rule["verbs"]),
            api_groups: strings(&rule["apiGroups"]),
            resources: strings(&rule["resources"]),
            resource_names: strings(&rule["resourceNames"]),
            non_resource_urls: strings(&rule["nonResourceURLs"]),
        }
    }

    /// The rules of a Role or ClusterRole object.
    pub fn of_role(role: &Value) -> Vec<Rule> {
        role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Rule::from_json)
            .collect()
    }

    /// The rule as JSON, empty lists left out (as Kubernetes serializes it).
    pub fn to_json(&self) -> Value {
        let mut rule = json!({"verbs": self.verbs});
        for (field, list) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !list.is_empty() {
                rule[field] = json!(list);
            }
        }
        rule
    }

    /// `*` on every resource of every group.
    pub fn all_resources() -> Rule {
        Rule {
            verbs: vec![ALL.into()],
            api_groups: vec![ALL.into()],
            resources: vec![ALL.into()],
            ..Rule::default()
        }
    }

    /// `*` on every non-resource path.
    pub fn all_urls() -> Rule {
        Rule {
            verbs: vec![ALL.into()],
            non_resource_urls: vec![ALL.into()],
            ..Rule::default()
        }
    }

    /// How many single rules [`Rule::breakdown`] makes; `None` past `usize`.
    pub fn breakdown_len(&self) -> Option<usize> {
        let names = self.resource_names.len().max(1);
        let resources = self
            .api_groups
            .len()
            .checked_mul(self.resources.len())?
            .checked_mul(self.verbs.len())?
            .checked_mul(names)?;
        let urls = self.non_resource_urls.len().checked_mul(self.verbs.len())?;
        resources.checked_add(urls)
    }

    /// The rule as single rules of one verb, group, resource and name, or one verb and path
    /// (`BreakdownRule`); bound [`Rule::breakdown_len`] first.
    pub fn breakdown(&self) -> Vec<Rule> {
        let one = |s: &String| vec![s.clone()];
        let names: Vec<Vec<String>> = if self.resource_names.is_empty() {
            vec![Vec::new()]
        } else {
            self.resource_names.iter().map(one).collect()
        };
        let mut singles = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    for name in &names {
                        singles.push(Rule {
                            verbs: one(verb),
                            api_groups: one(group),
                            resources: one(resource),
                            resource_names: name.clone(),
                            non_resource_urls: Vec::new(),
                        });
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                singles.push(Rule {
                    verbs: one(verb),
                    non_resource_urls: one(url),
                    ..Rule::default()
                });
            }
        }
        singles
    }

    /// Whether this rule allows everything the single rule `sub` does (`ruleCovers`).
    pub fn covers(&self, sub: &Rule) -> bool {
        let has = |set: &[String], s: &str| set.iter().any(|x| x == s);
        let has_all = |set: &[String], wanted: &[String]| wanted.iter().all(|w| has(set, w));
        let verbs = has(&self.verbs, ALL) || has_all(&self.verbs, &sub.verbs);
        let groups = has(&self.api_groups, ALL) || has_all(&self.api_groups, &sub.api_groups);
        let resources = has(&self.resources, ALL)
            || sub.resources.iter().all(|r| {
                has(&self.resources, r)
                    || r.split_once('/')
                        .is_some_and(|(_, sub)| has(&self.resources, &format!("*/{sub}")))
            });
        let urls = sub.non_resource_urls.iter().all(|path| {
            self.non_resource_urls.iter().any(|owner| {
                owner == path || owner.strip_suffix('*').is_some_and(|p| path.starts_with(p))
            })
        });
        let names = self.resource_names.is_empty()
            || (!sub.resource_names.is_empty()
                && has_all(&self.resource_names, &sub.resource_names));
        verbs && groups && resources && urls && names
    }

    /// Upstream's `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`.
    pub fn compact_string(&self) -> String {
        let quoted = |list: &[String]| {
            let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", items.join(" "))
        };
        let parts: Vec<String> = [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ]
        .into_iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(field, list)| format!("{field}:{}", quoted(list)))
        .collect();
        format!("{{{}}}", parts.join(", "))
    }

    /// Whether the rule allows the request `a` (`RuleAllows`).
    pub fn allows(&self, a: &Attributes) -> bool {
        if !self.verb_matches(&a.verb) {
            return false;
        }
        if !a.resource_request {
            return self.non_resource_url_matches(&a.path);
        }
        self.api_group_matches(&a.api_group)
            && self.resource_matches(&a.combined_resource(), &a.subresource)
            && self.resource_name_matches(&a.name)
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    fn api_group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == ALL || g == group)
    }

    /// `*`, the exact `resource/subresource`, or `*/subresource` for a request on a subresource.
    fn resource_matches(&self, combined: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            r == ALL
                || r == combined
                || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
        })
    }

    /// No names means every name.
    fn resource_name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    /// `*`, the exact path, or a prefix ending in `*`.
    fn non_resource_url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| {
            u == ALL
                || u == path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Rule {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Rule {
            verbs: owned(verbs),
            api_groups: owned(groups),
            resources: owned(resources),
            resource_names: owned(names),
            non_resource_urls: Vec::new(),
        }
    }

    #[test]
    fn resource_rules_match_as_upstream() {
        let pods = Attributes::resource("get", "", "pods", "t1", "web");
        assert!(rule(&["get"], &[""], &["pods"], &[]).allows(&pods));
        assert!(rule(&["*"], &["*"], &["*"], &[]).allows(&pods));
        assert!(rule(&["get"], &[""], &["pods"], &["web"]).allows(&pods));
        assert!(!rule(&["get"], &[""], &["pods"], &["db"]).allows(&pods));
        assert!(!rule(&["list"], &[""], &["pods"], &[]).allows(&pods));
        assert!(!rule(&["get"], &["apps"], &["pods"], &[]).allows(&pods));
        assert!(!rule(&["get"], &[""], &["secrets"], &[]).allows(&pods));

        let mut log = pods.clone();
        log.subresource = "log".into();
        assert!(rule(&["get"], &[""], &["pods/log"], &[]).allows(&log));
        assert!(rule(&["get"], &[""], &["*/log"], &[]).allows(&log));
        assert!(
            !rule(&["get"], &[""], &["pods"], &[]).allows(&log),
            "the resource alone does not cover its subresources"
        );
        assert!(!rule(&["get"], &[""], &["*/status"], &[]).allows(&log));
        assert!(!rule(&["get"], &[""], &["*/log"], &[]).allows(&pods));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_a_star_prefix() {
        let get = |path: &str| Attributes {
            verb: "get".into(),
            path: path.into(),
            ..Attributes::default()
        };
        let urls = Rule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/healthz".into(), "/apis/*".into()],
            ..Rule::default()
        };
        assert!(urls.allows(&get("/healthz")));
        assert!(urls.allows(&get("/apis/apps/v1")));
        assert!(!urls.allows(&get("/healthz/etcd")));
        assert!(!urls.allows(&get("/api")));
        let resource = rule(&["*"], &["*"], &["*"], &[]);
        assert!(
            !resource.allows(&get("/healthz")),
            "resource rules never allow paths"
        );
    }

    #[test]
    fn coverage_as_upstream() {
        let owner = rule(&["get", "list"], &[""], &["pods", "*/log"], &[]);
        let wanted = rule(&["get"], &[""], &["pods", "pods/log", "secrets"], &[]);
        let missing: Vec<String> = wanted
            .breakdown()
            .into_iter()
            .filter(|single| !owner.covers(single))
            .map(|single| single.compact_string())
            .collect();
        assert_eq!(
            missing,
            vec![r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#]
        );
        assert!(!rule(&["get"], &[""], &["pods"], &["a"]).covers(&rule(
            &["get"],
            &[""],
            &["pods"],
            &[]
        )));
        assert!(rule(&["get"], &[""], &["pods"], &[]).covers(&rule(
            &["get"],
            &[""],
            &["pods"],
            &["a"]
        )));
        assert!(Rule::all_resources().covers(&rule(&["*"], &["*"], &["*"], &[])));
        assert!(!rule(&["get"], &["*"], &["*"], &[]).covers(&rule(&["*"], &[""], &["pods"], &[])));
        let two = rule(&["a", "b"], &["g"], &["r"], &["n"]);
        assert_eq!((two.breakdown().len(), two.breakdown_len()), (2, Some(2)));
    }

    #[test]
    fn json_round_trip_leaves_empty_lists_out() {
        let value = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
        assert_eq!(Rule::from_json(&value).to_json(), value);
    }
}
