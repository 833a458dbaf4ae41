//! What a request asks to do, as Kubernetes' `RequestInfoFactory` reads it from the method and path: the attributes RBAC decides on.

use http::Method;

/// A request's verb and object, or its verb and non-resource path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    /// Whether the request is about a resource (else a non-resource path such as `/version`).
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The request path (for non-resource requests).
    pub path: String,
}

/// Subresources of a namespace, which keep `namespaces` as the resource.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

impl Attributes {
    /// A resource request's attributes.
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Attributes {
            verb: verb.to_string(),
            resource_request: true,
            api_group: group.to_string(),
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            ..Attributes::default()
        }
    }

    /// The attributes of a request, as upstream's `RequestInfoFactory.NewRequestInfo`.
    pub fn of_request(method: &Method, path: &str, query: Option<&str>) -> Attributes {
        let non_resource = Attributes {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_string(),
            ..Attributes::default()
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, mut rest) = match parts.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
            ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
            _ => return non_resource,
        };
        let mut verb = match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        }
        .to_string();
        let params = |key: &'static str| {
            query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .filter_map(move |pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (k == key).then_some(v)
                })
        };
        if rest.first() == Some(&"watch") {
            verb = "watch".to_string();
            rest = &rest[1..];
        }
        let mut attributes = Attributes {
            resource_request: true,
            api_group: group.to_string(),
            api_version: version.to_string(),
            path: path.to_string(),
            ..Attributes::default()
        };
        if rest.first() == Some(&"namespaces")
            && let Some(ns) = rest.get(1)
        {
            attributes.namespace = ns.to_string();
            if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
                rest = &rest[2..];
            }
        }
        attributes.resource = rest.first().map(|r| r.to_string()).unwrap_or_default();
        attributes.name = rest.get(1).map(|n| n.to_string()).unwrap_or_default();
        attributes.subresource = rest.get(2).map(|s| s.to_string()).unwrap_or_default();
        if attributes.name.is_empty() && verb == "get" {
            let watch = params("watch").any(|v| matches!(v, "true" | "1"));
            verb = if watch { "watch" } else { "list" }.to_string();
        }
        if attributes.name.is_empty() && matches!(verb.as_str(), "list" | "watch") {
            attributes.name = params("fieldSelector")
                .flat_map(|s| s.split("%2C").flat_map(|s| s.split(',')))
                .find_map(|term| {
                    let term = term.replace("%3D", "=");
                    let name = term
                        .strip_prefix("metadata.name==")
                        .or_else(|| term.strip_prefix("metadata.name="))?;
                    (!name.is_empty() && !name.contains(['/', '%'])).then(|| name.to_string())
                })
                .unwrap_or_default();
        }
        if attributes.name.is_empty() && verb == "delete" {
            verb = "deletecollection".to_string();
        }
        attributes.verb = verb;
        attributes
    }

    /// `resource/subresource`, or the resource alone.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// Why `user` is refused, in kube-apiserver's words (`forbiddenMessage`).
    pub fn forbidden_message(&self, user: &str) -> String {
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let resource = self.combined_resource();
        if self.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                self.verb, self.api_group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                self.verb, self.api_group, self.namespace
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: Method, path: &str, query: Option<&str>) -> Attributes {
        Attributes::of_request(&method, path, query)
    }

    #[test]
    fn verbs_and_objects_as_upstream_reads_them() {
        let a = of(Method::GET, "/api/v1/namespaces/y/pods", None);
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.namespace.as_str()),
            ("list", "pods", "y")
        );
        let a = of(Method::GET, "/api/v1/namespaces/y/pods", Some("watch=true"));
        assert_eq!(a.verb, "watch");
        let a = of(Method::GET, "/api/v1/watch/namespaces/y/pods", None);
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("watch", "y"));
        let a = of(
            Method::GET,
            "/api/v1/namespaces/y/pods",
            Some("fieldSelector=metadata.name%3Dweb&watch=1"),
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "web"));
        let a = of(
            Method::DELETE,
            "/apis/apps/v1/namespaces/y/deployments",
            None,
        );
        assert_eq!(
            (a.verb.as_str(), a.api_group.as_str()),
            ("deletecollection", "apps")
        );
        let a = of(
            Method::PUT,
            "/apis/apps/v1/namespaces/y/deployments/web/scale",
            None,
        );
        assert_eq!(
            (
                a.verb.as_str(),
                a.name.as_str(),
                a.combined_resource().as_str()
            ),
            ("update", "web", "deployments/scale")
        );
        let a = of(Method::GET, "/api/v1/namespaces/kube-system", None);
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "kube-system", "kube-system")
        );
        let a = of(Method::PUT, "/api/v1/namespaces/x/finalize", None);
        assert_eq!(
            (a.resource.as_str(), a.subresource.as_str()),
            ("namespaces", "finalize")
        );
        let a = of(
            Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            None,
        );
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("create", ""));
        for path in [
            "/api",
            "/api/v1",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/openapi/v2",
        ] {
            let a = of(Method::GET, path, None);
            assert!(!a.resource_request, "{path}");
            assert_eq!(a.verb, "get");
        }
    }

    #[test]
    fn forbidden_messages_in_upstream_wording() {
        let a = Attributes::resource("list", "", "pods", "y", "");
        assert_eq!(
            a.forbidden_message("x"),
            r#"User "x" cannot list resource "pods" in API group "" in the namespace "y""#
        );
        let mut a = Attributes::resource("get", "apps", "deployments", "", "web");
        a.subresource = "scale".into();
        assert_eq!(
            a.forbidden_message("x"),
            r#"User "x" cannot get resource "deployments/scale" in API group "apps" at the cluster scope"#
        );
        let a = of(Method::GET, "/metrics", None);
        assert_eq!(
            a.forbidden_message("x"),
            r#"User "x" cannot get path "/metrics""#
        );
    }
}
