//! Several control-plane hosts on one store: another `wasmkube server` joined with `wasmkube join
//! --control-plane` and the certificates the first host uploads.

use std::time::Duration;

use anyhow::Result;

use crate::{Cluster, eventually};

/// Leader election shorter than the defaults (15 s, 10 s, 2 s), to keep tests lean; the same
/// rules.
pub const FAST_ELECTION: [&str; 6] = [
    "--leader-elect-lease-duration",
    "6s",
    "--leader-elect-renew-deadline",
    "4s",
    "--leader-elect-retry-period",
    "1s",
];

impl Cluster {
    /// Joins another control-plane host to this one (`token create --upload-certs` here, then
    /// `join … --control-plane --certificate-key …`), with `extra` arguments (the same
    /// `--store etcd://…`, say).
    pub fn another_host(&self, extra: &[&str]) -> Result<Cluster> {
        let mut args = self.upload_certs()?;
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Cluster::join_control_plane(&args)
    }

    /// The holder of the controllers' Lease (`kube-system/kube-controller-manager`), as this
    /// host reads it; empty when released.
    pub fn leader(&self) -> Result<String> {
        self.ok(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
    }

    /// Waits (up to `timeout`) until a host other than `old` holds the Lease; that host.
    pub fn new_leader(&self, old: &str, timeout: Duration) -> Result<String> {
        eventually(timeout, || {
            let now = self.leader()?;
            Ok(!now.is_empty() && now != old)
        })?;
        self.leader()
    }
}
