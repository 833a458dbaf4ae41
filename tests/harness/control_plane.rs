//! Several control-plane hosts on one store: another `wasmkube server` joined with `wasmkube join
//! --control-plane` and the certificates the first host uploads.

use anyhow::Result;

use crate::Cluster;

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
}
