//! The apiserver's own endpoints: the `default/kubernetes` Service's Endpoints and EndpointSlice
//! name the address and port it advertises, as kube-apiserver's endpoint reconciler writes them.

use std::net::IpAddr;

use anyhow::Context as _;
use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::registry::{Update, WriteOptions, create_object, update_with};

/// The Service (in `default`) that names the apiserver.
const SERVICE: &str = "kubernetes";

/// The address pods reach the apiserver at: `--advertise-address`, else the bind address when it
/// is one, else this host's first global IPv4 address (kube-apiserver picks the default
/// route's interface), else loopback.
pub fn address(flag: Option<IpAddr>, bind: IpAddr) -> IpAddr {
    flag.or_else(|| (!bind.is_unspecified()).then_some(bind))
        .or_else(|| {
            wasmkube_node::registration::host_addresses()
                .into_iter()
                .find(IpAddr::is_ipv4)
        })
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The `kubernetes` Service's Endpoints: the apiserver at `ip:port`.
fn endpoints(ip: IpAddr, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        // Without kube-apiserver's `skip-mirror` label: the endpoints controller takes Endpoints
        // so labelled for its own and drops them when the Service has no selector.
        "metadata": {"name": SERVICE},
        "subsets": [{
            "addresses": [{"ip": ip.to_string()}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }],
    })
}

/// The `kubernetes` Service's EndpointSlice: the apiserver at `ip:port`, ready.
fn slice(ip: IpAddr, port: u16) -> Value {
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": SERVICE, "labels": {"kubernetes.io/service-name": SERVICE}},
        "addressType": family,
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    })
}

/// Writes the `kubernetes` Service's Endpoints and EndpointSlice so that they name `ip:port`:
/// created when missing, corrected when they name something else (an earlier start on another
/// address or port), left alone when right.
pub async fn reconcile(server: &Server, ip: IpAddr, port: u16) -> anyhow::Result<()> {
    for (object, fields) in [
        (endpoints(ip, port), &["subsets"][..]),
        (slice(ip, port), &["addressType", "endpoints", "ports"][..]),
    ] {
        let registry = server.registry();
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let info = registry
            .by_kind(&api_version, &kind)
            .with_context(|| format!("{kind} is served"))?;
        let current = server.objects.get(info, Some("default"), SERVICE).await?;
        if current.is_none() {
            create_object(
                server,
                info,
                Some("default"),
                object,
                WriteOptions::INTERNAL,
                &mut Vec::new(),
            )
            .await
            .with_context(|| format!("creating the {kind} of the kubernetes Service"))?;
            continue;
        }
        let update = Update::internal(info, Some("default"), SERVICE);
        let correct = |current: &Value| {
            let mut new = current.clone();
            for field in fields {
                new[*field] = object[*field].clone();
            }
            if let Some(labels) = object["metadata"].get("labels") {
                new["metadata"]["labels"] = labels.clone();
            }
            Ok(new)
        };
        update_with(server, &update, correct, &mut Vec::new())
            .await
            .with_context(|| format!("updating the {kind} of the kubernetes Service"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_bind_address() {
        let flag: IpAddr = "192.0.2.9".parse().expect("test setup");
        let bind: IpAddr = "198.51.100.4".parse().expect("test setup");
        assert_eq!(address(Some(flag), bind), flag);
        assert_eq!(address(None, bind), bind);
        let found = address(None, IpAddr::from([0, 0, 0, 0]));
        assert!(!found.is_unspecified());
    }

    #[test]
    fn the_slice_has_the_address_family_of_the_address() {
        let v6: IpAddr = "fd00::2".parse().expect("test setup");
        assert_eq!(slice(v6, 6443)["addressType"], "IPv6");
        assert_eq!(
            slice(IpAddr::from([10, 0, 0, 1]), 443)["ports"][0]["port"],
            443
        );
    }
}
