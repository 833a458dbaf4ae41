//! Service cluster IPs and node ports: allocated on create, claimed in the store in the same transaction as the Service, released with it.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::Range;

use rand::Rng;
use serde_json::{Value, json};
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::validation::{ErrorType, FieldError};

use crate::config::ServiceRange;
use crate::error::ApiError;
use crate::objects::Objects;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Service"
}

fn wants_ip(svc: &Value) -> bool {
    svc.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName")
        && svc.pointer("/spec/clusterIP").and_then(Value::as_str) != Some("None")
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(
        svc.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}

/// The store keys an object holds in the allocation ranges.
pub fn claims(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    if !is_service(info) {
        return Vec::new();
    }
    let mut keys = Vec::new();
    if let Some(ip) = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| ip.parse::<Ipv4Addr>().is_ok())
    {
        keys.push(format!("{IP_PREFIX}{ip}"));
    }
    for port in obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(p) = port["nodePort"].as_i64().filter(|p| *p != 0) {
            keys.push(format!("{PORT_PREFIX}{p}"));
        }
    }
    keys
}

fn invalid(name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    ApiError::Invalid {
        kind: "Service".into(),
        group: String::new(),
        name: name.into(),
        errors: vec![FieldError {
            field: field.into(),
            error: ErrorType::Invalid {
                value: format!("{value:?}"),
                detail: detail.into(),
            },
        }],
    }
}

async fn taken(objects: &Objects, key: &str) -> Result<bool, ApiError> {
    Ok(objects.store().get(key).await?.0.is_some())
}

/// Random picks from the first band before the allocator reads every claim of the range.
const RANDOM_TRIES: usize = 8;

/// A value of `bands` that no object claims (`key` gives its claim under `prefix`) and that is
/// not in `avoid`: random picks from the first band, then the lowest free value of each band
/// in turn, against every claim read at once. `None` when every value is taken.
async fn free(
    objects: &Objects,
    prefix: &str,
    bands: &[Range<u32>],
    avoid: &[u32],
    key: impl Fn(u32) -> String,
) -> Result<Option<u32>, ApiError> {
    if let Some(first) = bands.first().filter(|band| !band.is_empty()) {
        for _ in 0..RANDOM_TRIES {
            let pick = rand::rng().random_range(first.clone());
            if !avoid.contains(&pick) && !taken(objects, &key(pick)).await? {
                return Ok(Some(pick));
            }
        }
    }
    let claims = objects
        .store()
        .range(wasmkube_store::Range {
            prefix: prefix.to_string(),
            ..Default::default()
        })
        .await?;
    let claimed: HashSet<&str> = claims.kvs.iter().map(|kv| kv.key.as_str()).collect();
    Ok(bands
        .iter()
        .flat_map(Clone::clone)
        .find(|v| !avoid.contains(v) && !claimed.contains(key(*v).as_str())))
}

/// The node ports a Service that names none may get: the upper band first, then the lower
/// one, left to Services that ask for a port while the upper band has room (KEP-3668:
/// `min(max(16, size/32), 128)` ports).
fn node_port_bands() -> [Range<u32>; 2] {
    let (first, last) = (u32::from(*NODE_PORTS.start()), u32::from(*NODE_PORTS.end()));
    let static_band = ((last - first + 1) / 32).clamp(16, 128);
    [first + static_band..last + 1, first..first + static_band]
}

/// Every value of a range is taken: a 500, in kube-apiserver's words.
fn full(what: &str) -> ApiError {
    ApiError::Internal(format!("failed to allocate a {what}: range is full"))
}

/// Fills in a Service's cluster IP and node ports, keeping those it already has (from the
/// request, or from `old` on update). The store transaction that writes the Service claims them.
pub async fn allocate(
    objects: &Objects,
    range: &ServiceRange,
    info: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if !is_service(info) || !obj.get("spec").is_some_and(Value::is_object) {
        return Ok(());
    }
    let name = obj.name().to_string();
    let held = old.map(|o| claims(info, o)).unwrap_or_default();
    if wants_ip(obj) {
        let requested = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from);
        let ip = match (
            requested,
            old.and_then(|o| o.pointer("/spec/clusterIP"))
                .and_then(Value::as_str),
        ) {
            (None, Some(kept)) if !kept.is_empty() => kept.to_string(),
            (Some(ip), _) => {
                let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                    invalid(
                        &name,
                        "spec.clusterIPs[0]",
                        &ip,
                        "must be a valid IP address",
                    )
                })?;
                if !range.contains(parsed) && parsed != range.first() {
                    return Err(invalid(
                        &name,
                        "spec.clusterIPs[0]",
                        &ip,
                        "provided IP is not in the valid range",
                    ));
                }
                if !held.contains(&format!("{IP_PREFIX}{ip}"))
                    && taken(objects, &format!("{IP_PREFIX}{ip}")).await?
                {
                    return Err(invalid(
                        &name,
                        "spec.clusterIPs[0]",
                        &ip,
                        &format!("failed to allocate IP {ip}: provided IP is already allocated"),
                    ));
                }
                ip
            }
            (None, _) => {
                let ip_key = |offset| format!("{IP_PREFIX}{}", range.at(offset));
                let offset = free(objects, IP_PREFIX, &range.dynamic_bands(), &[], ip_key)
                    .await?
                    .ok_or_else(|| full("serviceIP"))?;
                range.at(offset).to_string()
            }
        };
        obj["spec"]["clusterIP"] = json!(ip);
        obj["spec"]["clusterIPs"] = json!([ip]);
        obj["spec"]["ipFamilies"] = json!(["IPv4"]);
        obj["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    }
    if wants_node_ports(obj) {
        let old_ports: Vec<i64> = old
            .and_then(|o| o.pointer("/spec/ports"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p["nodePort"].as_i64())
            .collect();
        let mut used: Vec<i64> = Vec::new();
        if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for (i, port) in ports.iter_mut().enumerate() {
                let wanted = port["nodePort"].as_i64().filter(|p| *p != 0);
                let chosen = match wanted {
                    Some(p) if old_ports.contains(&p) => p,
                    Some(p)
                        if used.contains(&p)
                            || taken(objects, &format!("{PORT_PREFIX}{p}")).await? =>
                    {
                        return Err(invalid(
                            &name,
                            &format!("spec.ports[{i}].nodePort"),
                            &p.to_string(),
                            "provided port is already allocated",
                        ));
                    }
                    Some(p) => p,
                    None => {
                        let avoid: Vec<u32> = used
                            .iter()
                            .chain(&old_ports)
                            .filter_map(|p| u32::try_from(*p).ok())
                            .collect();
                        let port_key = |port| format!("{PORT_PREFIX}{port}");
                        let port = free(objects, PORT_PREFIX, &node_port_bands(), &avoid, port_key)
                            .await?
                            .ok_or_else(|| full("nodePort"))?;
                        i64::from(port)
                    }
                };
                used.push(chosen);
                port["nodePort"] = json!(chosen);
            }
        }
    }
    Ok(())
}
