//! Service cluster IPs and node ports: allocated on create, claimed in the store in the same transaction as the Service, released with it.

use std::net::Ipv4Addr;

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
            (None, _) => loop {
                let ip = range.random().to_string();
                if !taken(objects, &format!("{IP_PREFIX}{ip}")).await? {
                    break ip;
                }
            },
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
                    None => loop {
                        let p = i64::from(rand::rng().random_range(NODE_PORTS));
                        if !used.contains(&p)
                            && !old_ports.contains(&p)
                            && !taken(objects, &format!("{PORT_PREFIX}{p}")).await?
                        {
                            break p;
                        }
                    },
                };
                used.push(chosen);
                port["nodePort"] = json!(chosen);
            }
        }
    }
    Ok(())
}
