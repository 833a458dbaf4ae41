//! A pod's container as a process: its command line, environment and limits, resolved the way
//! the kubelet resolves them.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use wasmkube_model::quantity;

use crate::image::ImageConfig;

/// Why a container's configuration cannot be made (`CreateContainerConfigError`).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("configmap {0:?} not found")]
    ConfigMapMissing(String),
    #[error("secret {0:?} not found")]
    SecretMissing(String),
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyMissing {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("unsupported fieldRef {0:?}")]
    FieldPath(String),
    #[error("unsupported resourceFieldRef {0:?}")]
    ResourceField(String),
}

/// The ConfigMaps and Secrets of the pod's namespace that its containers refer to; `None` for
/// one that does not exist. `claims` holds the host directory of each PersistentVolumeClaim
/// the pod mounts, by claim name. Secret values are bytes, base64-decoded once when read.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub namespace: String,
    pub config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    pub secrets: HashMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    pub claims: HashMap<String, std::path::PathBuf>,
    /// The ServiceAccount tokens of its projected volumes.
    pub tokens: crate::pod::tokens::Tokens,
}

impl Sources {
    fn config_map(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.config_maps.get(name).and_then(Option::as_ref)
    }
    fn secret(&self, name: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.secrets.get(name).and_then(Option::as_ref)
    }
}

/// The names of the ConfigMaps and Secrets the pod's containers and volumes read.
pub fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut config_maps = Vec::new();
    let mut secrets = Vec::new();
    let spec = pod.spec.as_ref();
    let containers = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers));
    for container in containers {
        for from in container.env_from.iter().flatten() {
            if let Some(c) = &from.config_map_ref {
                config_maps.push(c.name.clone());
            }
            if let Some(s) = &from.secret_ref {
                secrets.push(s.name.clone());
            }
        }
        for var in container.env.iter().flatten() {
            let Some(from) = &var.value_from else {
                continue;
            };
            if let Some(c) = &from.config_map_key_ref {
                config_maps.push(c.name.clone());
            }
            if let Some(s) = &from.secret_key_ref {
                secrets.push(s.name.clone());
            }
        }
    }
    for volume in spec.into_iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &volume.config_map {
            config_maps.push(c.name.clone());
        }
        if let Some(s) = &volume.secret {
            secrets.extend(s.secret_name.clone());
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(c) = &source.config_map {
                config_maps.push(c.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    config_maps.sort();
    config_maps.dedup();
    secrets.sort();
    secrets.dedup();
    (config_maps, secrets)
}

/// `$(NAME)` replaced by the variable's value when it is defined, `$$` escaping a `$`, as
/// Kubernetes expands command, args and env values.
pub fn expand(text: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match vars(name) {
                Some(value) => out.push_str(&value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's argv: Kubernetes' rule for combining `command`/`args` with the image's
/// Entrypoint/Cmd, then `$(VAR)` expansion with the container's environment.
pub fn argv(container: &Container, image: &ImageConfig, env: &[(String, String)]) -> Vec<String> {
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    let (head, tail) = match (command.is_empty(), args.is_empty()) {
        (false, _) => (command, args),
        (true, false) => (image.entrypoint.clone(), args),
        (true, true) => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    head.iter()
        .chain(&tail)
        .map(|a| expand(a, &lookup))
        .collect()
}

/// The pod field a `fieldRef` names.
fn field(pod: &Pod, path: &str) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(map.as_ref()?.get(key).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.podIPs" => status.map(|s| {
            let ips: Vec<String> = s.pod_ips.iter().flatten().map(|i| i.ip.clone()).collect();
            ips.join(",")
        }),
        _ => keyed("metadata.labels", &meta.labels)
            .or_else(|| keyed("metadata.annotations", &meta.annotations))
            .map(Some)
            .ok_or_else(|| ConfigError::FieldPath(path.to_string()))?,
    };
    Ok(value.unwrap_or_default())
}

/// What a `resourceFieldRef` names, in units of its divisor, rounded up; a missing limit is the
/// node's allocatable amount, as in Kubernetes.
fn resource_field(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    allocatable: &Allocatable,
) -> Result<String, ConfigError> {
    let resources = container.resources.as_ref();
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| ConfigError::ResourceField(resource.to_string()))?;
    let map = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(ConfigError::ResourceField(resource.to_string())),
    };
    let set = map.and_then(|m| m.get(name)).map(|q| q.0.as_str());
    let cpu = name == "cpu";
    let amount = match (set, cpu) {
        (Some(q), true) => quantity::milli(q),
        (Some(q), false) => quantity::units(q),
        (None, true) => Some(allocatable.cpu_milli),
        (None, false) if name == "memory" => Some(allocatable.memory),
        (None, false) => Some(0),
    }
    .ok_or_else(|| ConfigError::ResourceField(resource.to_string()))?;
    let divisor = match (divisor, cpu) {
        (Some(d), true) => quantity::milli(d),
        (Some(d), false) => quantity::units(d),
        (None, true) => Some(1000),
        (None, false) => Some(1),
    }
    .filter(|d| *d > 0)
    .ok_or_else(|| ConfigError::ResourceField(resource.to_string()))?;
    Ok(((amount + divisor - 1) / divisor).to_string())
}

/// The node's allocatable CPU and memory, for limits a container leaves unset.
#[derive(Clone, Copy, Debug, Default)]
pub struct Allocatable {
    pub cpu_milli: i64,
    pub memory: i64,
}

/// The container's environment in order: `envFrom` sources, then `env` (later names win, and
/// `$(VAR)` in a value refers to variables before it).
pub fn environment(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    allocatable: &Allocatable,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    let namespace = &sources.namespace;
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(c) = &from.config_map_ref {
            match sources.config_map(&c.name) {
                Some(data) => data
                    .iter()
                    .for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), v.clone())),
                None if c.optional == Some(true) => {}
                None => return Err(ConfigError::ConfigMapMissing(c.name.clone())),
            }
        }
        if let Some(s) = &from.secret_ref {
            match sources.secret(&s.name) {
                Some(data) => data
                    .iter()
                    .for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), text(v))),
                None if s.optional == Some(true) => {}
                None => return Err(ConfigError::SecretMissing(s.name.clone())),
            }
        }
    }
    for EnvVar {
        name,
        value,
        value_from,
    } in container.env.iter().flatten()
    {
        let value = match (value, value_from) {
            (_, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field(pod, &f.field_path)?
                } else if let Some(r) = &from.resource_field_ref {
                    let divisor = r.divisor.as_ref().map(|d| d.0.as_str());
                    resource_field(container, &r.resource, divisor, allocatable)?
                } else if let Some(k) = &from.config_map_key_ref {
                    let data = sources.config_map(&k.name);
                    let optional = k.optional == Some(true);
                    match key_value(data, "ConfigMap", &k.name, &k.key, optional, namespace)? {
                        Some(value) => value,
                        None => continue,
                    }
                } else if let Some(k) = &from.secret_key_ref {
                    let data = sources.secret(&k.name);
                    let optional = k.optional == Some(true);
                    match key_value(data, "Secret", &k.name, &k.key, optional, namespace)? {
                        Some(value) => value,
                        None => continue,
                    }
                } else {
                    String::new()
                }
            }
            (Some(value), None) => {
                let lookup = |n: &str| {
                    env.iter()
                        .rev()
                        .find(|(name, _)| name == n)
                        .map(|(_, v)| v.clone())
                };
                expand(value, &lookup)
            }
            (None, None) => String::new(),
        };
        set(&mut env, name.clone(), value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests;

/// `key` of a ConfigMap's or Secret's (`kind`) data, for an env var; `None` when it is absent
/// and the reference is optional.
fn key_value<V: AsRef<[u8]>>(
    data: Option<&BTreeMap<String, V>>,
    kind: &'static str,
    name: &str,
    key: &str,
    optional: bool,
    namespace: &str,
) -> Result<Option<String>, ConfigError> {
    match data.and_then(|d| d.get(key)) {
        Some(value) => Ok(Some(text(value))),
        None if optional => Ok(None),
        None if data.is_none() && kind == "Secret" => Err(ConfigError::SecretMissing(name.into())),
        None if data.is_none() => Err(ConfigError::ConfigMapMissing(name.into())),
        None => Err(ConfigError::KeyMissing {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            key: key.to_string(),
        }),
    }
}

/// A ConfigMap's or Secret's value as an environment variable's text. The kubelet puts a
/// Secret's bytes in a Go string as they are; the OCI spec's JSON then carries bytes that are
/// not UTF-8 as U+FFFD, which is what this does.
fn text(value: impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(value.as_ref()).into_owned()
}
