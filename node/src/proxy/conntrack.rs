//! Stale UDP flows forgotten: the conntrack entries that would keep a Service's UDP traffic going
//! to an endpoint that is gone, or on to the rejection of a Service that had no endpoint, after
//! the rules changed (kube-proxy's `conntrack.CleanStaleEntries`). TCP needs none of this: a
//! connection to a gone pod is reset, and a new one is NATed afresh.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use tokio::process::Command;

use super::service::{Protocol, Proxied};

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("running conntrack: {0}")]
    Spawn(std::io::Error),
    #[error("conntrack {args}: {message}")]
    Refused { args: String, message: String },
}

/// A set of UDP flows for the kernel to forget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stale {
    /// Flows NATed to this endpoint, which no longer serves.
    Endpoint(Ipv4Addr),
    /// Flows to this Service address from before it had an endpoint: conntrack keeps them
    /// un-NATed (rejected) for as long as the client keeps sending.
    Address(Ipv4Addr),
    /// Flows to this node port from before it had an endpoint.
    NodePort(u16),
}

/// Where the proxy sends the flows to forget.
#[async_trait::async_trait]
pub trait Conntrack: Send + Sync {
    /// Deletes the UDP conntrack entries `stale` names; none is not an error.
    async fn forget(&self, stale: Stale) -> Result<(), ConntrackError>;
}

/// The `conntrack` program of the conntrack package.
pub struct ConntrackCommand;

#[async_trait::async_trait]
impl Conntrack for ConntrackCommand {
    async fn forget(&self, stale: Stale) -> Result<(), ConntrackError> {
        let (flag, value) = match stale {
            Stale::Endpoint(ip) => ("--dst-nat", ip.to_string()),
            Stale::Address(ip) => ("--orig-dst", ip.to_string()),
            Stale::NodePort(port) => ("--orig-port-dst", port.to_string()),
        };
        let args = ["-D", "-p", "udp", flag, &value];
        let output = Command::new("conntrack")
            .args(args)
            .output()
            .await
            .map_err(ConntrackError::Spawn)?;
        let message = String::from_utf8_lossy(&output.stderr);
        // It exits 1 when nothing matched.
        if output.status.success() || message.contains("0 flow entries have been deleted") {
            return Ok(());
        }
        Err(ConntrackError::Refused {
            args: args.join(" "),
            message: message.trim().to_string(),
        })
    }
}

/// The UDP side of what a Service has programmed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Udp {
    /// The endpoints UDP traffic is NATed to.
    endpoints: BTreeSet<Ipv4Addr>,
    /// The addresses and node ports whose UDP traffic has an endpoint to go to.
    served: BTreeSet<Stale>,
}

impl Udp {
    /// What `proxied` sends over UDP, and where.
    pub fn of(proxied: &Proxied) -> Udp {
        let mut udp = Udp::default();
        for port in proxied.ports.iter().filter(|p| p.protocol == Protocol::Udp) {
            if port.cluster.is_empty() {
                continue;
            }
            udp.endpoints.extend(port.cluster.iter().map(|e| e.ip));
            udp.served.insert(Stale::Address(proxied.cluster_ip));
            udp.served
                .extend(proxied.external_ips.iter().map(|ip| Stale::Address(*ip)));
            udp.served.extend(port.node_port.map(Stale::NodePort));
        }
        udp
    }

    /// The flows to forget when a Service goes from `old` to `new`: those to endpoints it no
    /// longer has, and those to addresses and ports that had no endpoint before.
    pub fn stale(old: &Udp, new: &Udp) -> Vec<Stale> {
        let gone = old
            .endpoints
            .difference(&new.endpoints)
            .map(|ip| Stale::Endpoint(*ip));
        let served = new.served.difference(&old.served).copied();
        gone.chain(served).collect()
    }
}

/// A fake kernel that records the flows it is told to forget.
#[cfg(test)]
#[derive(Default)]
pub struct FakeConntrack {
    pub forgotten: std::sync::Mutex<Vec<Stale>>,
}

#[cfg(test)]
#[async_trait::async_trait]
impl Conntrack for FakeConntrack {
    async fn forget(&self, stale: Stale) -> Result<(), ConntrackError> {
        self.forgotten.lock().expect("not poisoned").push(stale);
        Ok(())
    }
}
