//! Plugins that ship inside the binary: installed when missing, upgraded when the binary carries another version, never written over an operator's own.

use std::io::Read as _;

use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::{
    DeleteOptions, Update, WriteOptions, create_object, delete_object, update_with,
};

use crate::module::{
    BUILTIN, BUILTIN_DIGEST, MANAGED_BY, PluginKind, is_builtin, module_ref, plugins, store_chunks,
};

/// The wall-clock deadline of one call into a built-in plugin, which its `Plugin` carries as
/// `spec.limits.callTimeoutMillis` (an operator may change it). The 1 s default of other plugins
/// does not fit: a deadline counts host calls, and the replicaset controller creates up to 500
/// pods (Kubernetes' `BurstReplicas`) with an Event each in one reconcile, about a thousand writes
/// that take seconds on a busy 2-core machine.
pub const BUILTIN_CALL_TIMEOUT_MILLIS: u64 = 30_000;

/// Why a built-in plugin's component could not be read from the binary.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("inflating the built-in plugin {name}: {source}")]
    Inflate {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("the built-in plugin {name} inflates to {actual} bytes, not {expected}")]
    Length {
        name: &'static str,
        expected: usize,
        actual: usize,
    },
}

/// A plugin compiled into the binary.
#[derive(Clone, Copy)]
pub struct Builtin {
    /// The Plugin's name (`replicaset`, `default`…).
    pub name: &'static str,
    pub kind: PluginKind,
    /// The component, deflated (raw DEFLATE) by the build: only a start that installs or upgrades
    /// it reads these pages of the binary, which then stay resident.
    pub deflated: &'static [u8],
    /// The component's length.
    pub len: usize,
    /// `sha256:<hex>` of `bytes`, computed when the binary was built, so that a start which
    /// finds the Plugin current does not read the bytes at all.
    pub digest: &'static str,
}

/// What [`ensure`] or [`disable`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// There was no such Plugin: it was created.
    Installed,
    /// The Plugin ran an older built-in version: it now runs the binary's.
    Upgraded,
    /// The Plugin already runs the binary's version.
    Current,
    /// An operator replaced the module (or installed a Plugin of that name): left alone.
    Replaced,
    /// `--disable-plugin`: the binary's Plugin was deleted.
    Removed,
    /// `--disable-plugin`: there was no Plugin of the binary's to delete.
    Absent,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Installed => "installed",
            Outcome::Upgraded => "upgraded",
            Outcome::Current => "current",
            Outcome::Replaced => "replaced by an operator, left alone",
            Outcome::Removed => "disabled, removed",
            Outcome::Absent => "disabled",
        }
    }
}

impl Builtin {
    /// The component's bytes, inflated.
    pub fn module(&self) -> Result<Vec<u8>, BuiltinError> {
        let mut bytes = Vec::with_capacity(self.len);
        let limit = u64::try_from(self.len).map_or(u64::MAX, |len| len.saturating_add(1));
        flate2::read::DeflateDecoder::new(self.deflated)
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|source| BuiltinError::Inflate {
                name: self.name,
                source,
            })?;
        if bytes.len() != self.len {
            return Err(BuiltinError::Length {
                name: self.name,
                expected: self.len,
                actual: bytes.len(),
            });
        }
        Ok(bytes)
    }

    /// The Plugin object the binary installs.
    fn plugin(&self) -> Value {
        json!({
            "apiVersion": "wasmkube.dev/v1alpha1",
            "kind": "Plugin",
            "metadata": {
                "name": self.name,
                "annotations": {MANAGED_BY: BUILTIN, BUILTIN_DIGEST: self.digest},
            },
            "spec": {
                "kind": self.kind.as_str(),
                "module": module_ref(self.digest, self.len),
                "limits": {"callTimeoutMillis": BUILTIN_CALL_TIMEOUT_MILLIS},
            },
        })
    }

    /// Installs this plugin when it is missing and upgrades it when it runs another built-in
    /// version; a Plugin an operator installed or swapped stays as it is.
    pub async fn ensure(&self, server: &Server) -> Result<Outcome, ApiError> {
        let info = plugins(server)?;
        let current = server.objects.get(&info, None, self.name).await?;
        match current.map(|c| c.object) {
            Some(p) if !is_builtin(&p) => return Ok(Outcome::Replaced),
            // One installed before built-ins had their own deadline is updated below.
            Some(p)
                if p["spec"]["module"]["digest"] == self.digest
                    && p.pointer("/spec/limits/callTimeoutMillis").is_some() =>
            {
                return Ok(Outcome::Current);
            }
            _ => {}
        }
        let module = self
            .module()
            .map_err(|err| ApiError::Internal(err.to_string()))?;
        store_chunks(server, &module).await?;
        let wanted = self.plugin();
        let created = create_object(
            server,
            &info,
            None,
            wanted.clone(),
            WriteOptions::INTERNAL,
            &mut Vec::new(),
        )
        .await;
        match created {
            Ok(_) => return Ok(Outcome::Installed),
            Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        // Checked again inside the update, so an operator's swap in between wins.
        let update = Update::internal(&info, None, self.name);
        let new = update_with(
            server,
            &update,
            |cur| {
                let mut new = cur.clone();
                if is_builtin(cur) {
                    new["spec"]["module"] = wanted["spec"]["module"].clone();
                    new["metadata"]["annotations"][BUILTIN_DIGEST] =
                        wanted["metadata"]["annotations"][BUILTIN_DIGEST].clone();
                    // Installed before built-ins had their own deadline: given it, unless set.
                    if cur.pointer("/spec/limits/callTimeoutMillis").is_none() {
                        new["spec"]["limits"]["callTimeoutMillis"] =
                            json!(BUILTIN_CALL_TIMEOUT_MILLIS);
                    }
                }
                Ok(new)
            },
            &mut Vec::new(),
        )
        .await?;
        Ok(if is_builtin(&new) {
            Outcome::Upgraded
        } else {
            Outcome::Replaced
        })
    }

    /// Leaves this plugin out (`--disable-plugin`): deletes the Plugin if the binary installed
    /// it; one an operator installed stays.
    pub async fn disable(&self, server: &Server) -> Result<Outcome, ApiError> {
        let info = plugins(server)?;
        match server.objects.get(&info, None, self.name).await? {
            Some(p) if is_builtin(&p.object) => {
                let uid = p.object["metadata"]["uid"].as_str().map(String::from);
                let opts = DeleteOptions {
                    uid,
                    ..DeleteOptions::background()
                };
                delete_object(server, &info, None, self.name, &opts).await?;
                Ok(Outcome::Removed)
            }
            Some(_) => Ok(Outcome::Replaced),
            None => Ok(Outcome::Absent),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn a_builtin_inflates_to_its_length_or_says_why_not() {
        let mut deflate =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflate.write_all(b"component bytes").expect("deflates");
        let deflated: &'static [u8] = Box::leak(deflate.finish().expect("deflates").into());
        let builtin = |len| Builtin {
            name: "test",
            kind: PluginKind::Controller,
            deflated,
            len,
            digest: "sha256:0",
        };
        assert_eq!(builtin(15).module().expect("inflates"), b"component bytes");
        for len in [14, 16] {
            assert!(matches!(
                builtin(len).module(),
                Err(BuiltinError::Length { actual: 15, .. })
            ));
        }
        let corrupt = Builtin {
            deflated: b"\xff\xff",
            ..builtin(15)
        };
        assert!(matches!(
            corrupt.module(),
            Err(BuiltinError::Inflate { .. })
        ));
    }
}
