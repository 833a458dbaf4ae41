//! The ServiceAccount admission plugin on pod create: the ServiceAccount named, defaulted and mirrored, must exist; its token, the cluster CA and the namespace are mounted as the `kube-api-access-*` volume.

use serde_json::{Value, json};
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::validation::{ErrorType, FieldError, is_dns1123_subdomain};

use super::write::{WriteOptions, create_object};
use crate::error::ApiError;
use crate::server::Server;

/// The ServiceAccount of pods that name none, made in every namespace.
pub const DEFAULT: &str = "default";
/// Static pods' mirrors are left alone, as upstream.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Where containers find the token, `ca.crt` and `namespace`.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token volume's name before its random suffix.
const VOLUME_PREFIX: &str = "kube-api-access-";
/// The token's lifetime the volume asks for (upstream's `WarnOnlyBoundTokenExpirationSeconds`).
const TOKEN_EXPIRATION_SECS: i64 = 3607;
/// The characters of generated name suffixes (Kubernetes' `utilrand` alphabet: no vowels, no
/// look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The name `spec` runs as: `serviceAccountName`, else the deprecated `serviceAccount`, else
/// [`DEFAULT`].
fn named(spec: &Value) -> String {
    ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|field| spec[field].as_str().filter(|n| !n.is_empty()))
        .unwrap_or(DEFAULT)
        .to_string()
}

/// Sets `spec.serviceAccountName` and its deprecated twin `spec.serviceAccount`, refuses the
/// pod (403, upstream's words) when that ServiceAccount does not exist in its namespace, and
/// unless the pod or else the ServiceAccount says `automountServiceAccountToken: false`,
/// mounts the token volume (see [`mount_token`]). Only on
/// servers that issue ServiceAccount tokens (every `wasmkube server`; in-process test servers
/// without a key skip the lookup). A missing `default` ServiceAccount is made here rather
/// than refused: the namespace controller makes it moments after the namespace, and a pod
/// created in that moment would otherwise fail.
pub async fn admit(
    server: &Server,
    pod_info: &ResourceInfo,
    pod: &mut Value,
) -> Result<(), ApiError> {
    let name = named(&pod["spec"]);
    if !is_dns1123_subdomain(&name) {
        let error = FieldError {
            field: "spec.serviceAccountName".into(),
            error: ErrorType::Invalid {
                value: json!(name).to_string(),
                detail: "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into(),
            },
        };
        return Err(ApiError::invalid(pod_info, pod.name(), vec![error]));
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("serviceAccountName".into(), json!(name));
        spec.insert("serviceAccount".into(), json!(name));
    }
    let mirror = pod["metadata"]["annotations"][MIRROR_ANNOTATION].is_string();
    if server.cluster.service_accounts.is_none() || mirror {
        return Ok(());
    }
    let Some(ns) = pod.namespace().map(String::from) else {
        return Ok(());
    };
    let registry = server.registry();
    let info = registry
        .by_kind("v1", "ServiceAccount")
        .ok_or_else(|| ApiError::Internal("serviceaccounts are not served".into()))?;
    let sa = match server.objects.get(info, Some(&ns), &name).await? {
        Some(stored) => stored.object,
        None if name == DEFAULT => {
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT}});
            let made = Box::pin(create_object(
                server,
                info,
                Some(&ns),
                sa.clone(),
                WriteOptions::INTERNAL,
                &mut Vec::new(),
            ))
            .await;
            match made {
                Ok(made) => made,
                Err(ApiError::AlreadyExists { .. }) => sa,
                Err(e) => return Err(e),
            }
        }
        None => {
            return Err(ApiError::Forbidden(format!(
                "pods {:?} is forbidden: error looking up service account {ns}/{name}: serviceaccount {name:?} not found",
                pod.name()
            )));
        }
    };
    let automount = pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(&mut pod["spec"]);
    }
    Ok(())
}

/// Mounts the token volume read-only at [`MOUNT_PATH`] in every init container and container
/// that mounts nothing there, adding the volume (`kube-api-access-XXXXX`: the token for the
/// API's audience, bound to the pod, of [`TOKEN_EXPIRATION_SECS`]; `ca.crt` from the
/// `kube-root-ca.crt` ConfigMap; `namespace`) unless the pod has one of that prefix already,
/// as upstream.
fn mount_token(spec: &mut Value) {
    let existing = spec["volumes"].as_array().and_then(|volumes| {
        volumes
            .iter()
            .filter_map(|v| v["name"].as_str())
            .find(|n| n.starts_with(VOLUME_PREFIX))
            .map(String::from)
    });
    let name = existing.clone().unwrap_or_else(|| {
        use rand::Rng as _;
        let mut rng = rand::rng();
        let suffix: String = (0..5)
            .map(|_| char::from(SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())]))
            .collect();
        format!("{VOLUME_PREFIX}{suffix}")
    });
    let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec[list].as_array_mut() else {
            continue;
        };
        for container in containers {
            let has_path = container["volumeMounts"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["mountPath"] == MOUNT_PATH));
            if has_path {
                continue;
            }
            match container["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount.clone()),
                None => container["volumeMounts"] = json!([mount.clone()]),
            }
            mounted = true;
        }
    }
    if !mounted || existing.is_some() {
        return;
    }
    let volume = json!({"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_EXPIRATION_SECS}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}});
    match spec["volumes"].as_array_mut() {
        Some(volumes) => volumes.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_the_new_field_then_the_old_then_default() {
        assert_eq!(named(&json!({})), "default");
        assert_eq!(named(&json!({"serviceAccountName": ""})), "default");
        assert_eq!(named(&json!({"serviceAccount": "old"})), "old");
        assert_eq!(
            named(&json!({"serviceAccountName": "new", "serviceAccount": "old"})),
            "new"
        );
    }

    #[test]
    fn the_token_volume_is_mounted_where_nothing_else_is() {
        let mut spec = json!({
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "b", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        });
        mount_token(&mut spec);
        let volume = &spec["volumes"][1];
        let name = volume["name"].as_str().expect("a name");
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(
            volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(spec["containers"][0]["volumeMounts"][1], mount);
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        // Once there, the volume is reused, not added again.
        let before = spec.clone();
        mount_token(&mut spec);
        assert_eq!(spec, before);
    }
}
