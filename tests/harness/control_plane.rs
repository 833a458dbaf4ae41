//! Several control-plane hosts on one store: another `wasmkube server` with the first's
//! credentials (`join --control-plane` does not exist yet).

use anyhow::{Result, ensure};

use crate::Cluster;

impl Cluster {
    /// Starts another server sharing this one's CA, keys and tokens (a copy of its `pki/`), with
    /// `extra` arguments (the same `--store etcd://…`, say).
    pub fn another_host(&self, extra: &[&str]) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(self.dir.path().join("pki"))
            .arg(dir.path())
            .status()?;
        ensure!(status.success(), "copying the first host's pki");
        Cluster::start_in(dir, extra)
    }
}
