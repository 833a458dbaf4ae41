//! The etcd of `--store etcd://…` (plain HTTP) or `--store etcds://…` (TLS, with kube-apiserver's `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile`): its endpoints and TLS settings.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmkube_store::etcd::EtcdTls;

#[derive(clap::Args, Clone, Default)]
pub struct EtcdArgs {
    /// The CA etcd's serving certificate chains to (PEM), for `--store etcds://…`, as
    /// kube-apiserver's `--etcd-cafile`.
    #[arg(long, value_name = "FILE")]
    pub etcd_cafile: Option<PathBuf>,
    /// The client certificate (PEM) presented to an etcd started with `--client-cert-auth`, as
    /// kube-apiserver's `--etcd-certfile`.
    #[arg(long, value_name = "FILE", requires = "etcd_keyfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// The client certificate's key (PEM), as kube-apiserver's `--etcd-keyfile`.
    #[arg(long, value_name = "FILE", requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,
}

/// The contents of `file`.
fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

impl EtcdArgs {
    /// The endpoint URLs of the store `spec` (`etcd://A,B` or `etcds://A,B`), and the TLS
    /// settings of `etcds://`.
    pub fn endpoints(&self, spec: &str) -> anyhow::Result<(Vec<String>, Option<EtcdTls>)> {
        let usage = "--store must be `embedded`, `etcd://HOST:PORT[,…]` or `etcds://HOST:PORT[,…]`";
        let (scheme, hosts) = match spec.split_once("://") {
            Some(("etcd", hosts)) => ("http", hosts),
            Some(("etcds", hosts)) => ("https", hosts),
            _ => anyhow::bail!("{usage}"),
        };
        if hosts.split(',').any(|h| h.is_empty() || h.contains('/')) {
            anyhow::bail!("{usage}: {spec:?}");
        }
        let endpoints = hosts
            .split(',')
            .map(|h| format!("{scheme}://{h}"))
            .collect();
        let given = self.etcd_cafile.is_some() || self.etcd_certfile.is_some();
        let tls = match (scheme, &self.etcd_cafile) {
            ("http", _) if given => {
                anyhow::bail!("--etcd-cafile/--etcd-certfile need --store etcds://… (TLS)")
            }
            ("http", _) => None,
            (_, None) => anyhow::bail!("--store etcds://… needs --etcd-cafile"),
            (_, Some(ca)) => Some(EtcdTls {
                ca_pem: read(ca)?,
                client: match (&self.etcd_certfile, &self.etcd_keyfile) {
                    (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                    _ => None,
                },
            }),
        };
        Ok((endpoints, tls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls_endpoints() {
        let plain = EtcdArgs::default();
        let (endpoints, tls) = plain.endpoints("etcd://a:1,b:2").expect("plain");
        assert_eq!(endpoints, ["http://a:1", "http://b:2"]);
        assert!(tls.is_none());
        for bad in [
            "etcd://",
            "etcd://a:1,",
            "http://a:1",
            "etcd://a/b",
            "etcds://a:1",
        ] {
            assert!(plain.endpoints(bad).is_err(), "{bad}");
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "CA").expect("written");
        let tls = EtcdArgs {
            etcd_cafile: Some(ca.clone()),
            ..EtcdArgs::default()
        };
        let (endpoints, settings) = tls.endpoints("etcds://a:1").expect("tls");
        assert_eq!(endpoints, ["https://a:1"]);
        let settings = settings.expect("TLS settings");
        assert_eq!(settings.ca_pem, "CA");
        assert!(settings.client.is_none());
        let err = tls.endpoints("etcd://a:1").expect_err("plain with a CA");
        assert!(err.to_string().contains("etcds://"), "{err}");
        let missing = EtcdArgs {
            etcd_cafile: Some(dir.path().join("absent")),
            ..EtcdArgs::default()
        };
        assert!(missing.endpoints("etcds://a:1").is_err());
    }
}
