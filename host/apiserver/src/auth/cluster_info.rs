//! kubeadm's discovery: the `kube-public/cluster-info` ConfigMap (a kubeconfig with the server's address and CA), readable by anonymous users so that a joining node can fetch the CA and check it against its pin.

use serde_json::{Value, json};
use wasmkube_model::resource::RBAC_GROUP;

use super::user::User;
use crate::error::ApiError;
use crate::registry::{Update, WriteOptions, create_object, update_with};
use crate::server::Server;

/// The namespace and name of the ConfigMap.
pub const NAMESPACE: &str = "kube-public";
pub const NAME: &str = "cluster-info";
/// The Role (and RoleBinding) that lets anonymous users read it, as kubeadm names it.
const ROLE: &str = "kubeadm:bootstrap-signer-clusterinfo";
/// The user of a request without credentials, and its group.
pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";

/// The user of a request without credentials (not in `system:authenticated`).
pub fn anonymous() -> User {
    User {
        name: ANONYMOUS.to_string(),
        groups: vec![UNAUTHENTICATED.to_string()],
        ..User::default()
    }
}

/// The kubeconfig `cluster-info` holds: a cluster of `url` and the PEM CA `ca_pem`, no user.
pub fn kubeconfig(url: &str, ca_pem: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    certificate-authority-data: {ca}\n    server: {url}\ncontexts: null\ncurrent-context: \"\"\npreferences: {{}}\nusers: null\n"
    )
}

/// Creates `object` of `api_version`/`kind`, or replaces what `fields` name when they differ.
async fn put(server: &Server, ns: &str, object: Value, fields: &[&str]) -> Result<(), ApiError> {
    let registry = server.registry();
    let text = |f: &str| object[f].as_str().unwrap_or_default().to_string();
    let info = registry
        .by_kind(&text("apiVersion"), &text("kind"))
        .ok_or_else(|| ApiError::Internal(format!("{} is not served", text("kind"))))?
        .clone();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if server.objects.get(&info, Some(ns), &name).await?.is_none() {
        let created = create_object(
            server,
            &info,
            Some(ns),
            object.clone(),
            WriteOptions::INTERNAL,
            &mut Vec::new(),
        )
        .await;
        match created {
            Ok(_) => return Ok(()),
            Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let update = Update::internal(&info, Some(ns), &name);
    let replace = |current: &Value| {
        let mut new = current.clone();
        for field in fields {
            new[*field] = object[*field].clone();
        }
        Ok(new)
    };
    update_with(server, &update, replace, &mut Vec::new()).await?;
    Ok(())
}

/// Publishes `cluster-info` for the server at `url` with CA `ca_pem`, and the Role and
/// RoleBinding that let `system:anonymous` get it (and nothing else), as kubeadm does.
pub async fn publish(server: &Server, url: &str, ca_pem: &str) -> Result<(), ApiError> {
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "data": {"kubeconfig": kubeconfig(url, ca_pem)},
    });
    put(server, NAMESPACE, config_map, &["data"]).await?;
    let role = json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"), "kind": "Role",
        "metadata": {"name": ROLE, "namespace": NAMESPACE},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [NAME], "verbs": ["get"]}],
    });
    put(server, NAMESPACE, role, &["rules"]).await?;
    let binding = json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"), "kind": "RoleBinding",
        "metadata": {"name": ROLE, "namespace": NAMESPACE},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": ROLE},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "User", "name": ANONYMOUS}],
    });
    put(server, NAMESPACE, binding, &["subjects"]).await?;
    super::policy::refresh(server).await
}
