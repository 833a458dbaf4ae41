//! Objects in the store: key layout, JSON encoding, resourceVersion, compare-and-swap writes, paged lists.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use wasmkube_model::convert;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_store::{Compare, KeyValue, Op, Range, Store, Txn, TxnResult};

use crate::error::ApiError;

/// Parses a `resourceVersion` string: empty and "0" mean "any".
pub fn parse_revision(rv: Option<&str>) -> Result<Option<i64>, ApiError> {
    match rv {
        None | Some("") | Some("0") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid resource version {s:?}"))),
    }
}

/// An object as read from the store, with the revision it was last written at.
#[derive(Clone, Debug)]
pub struct Stored {
    pub object: Value,
    pub revision: i64,
}

/// Decodes a stored value and stamps `metadata.resourceVersion` from its revision.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("corrupt object at {}: {e}", kv.key)))?;
    set_resource_version(&mut object, kv.mod_revision);
    Ok(object)
}

/// Decodes a stored value into the form of `info` (see `wasmkube_model::convert`).
pub fn decode_as(info: &ResourceInfo, kv: &KeyValue) -> Result<Value, ApiError> {
    Ok(convert::from_storage(info, decode(kv)?))
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
}

fn encode(object: &Value) -> Result<Bytes, ApiError> {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The allocation claims an update moves: from those the object `held` to those it `wanted`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClaimMove<'a> {
    pub held: &'a [String],
    pub wanted: &'a [String],
}

/// A page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
}

/// The object store over any [`Store`] backend.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn Store>,
}

impl Objects {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Objects { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn get(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Stored>, ApiError> {
        let (kv, _) = self.store.get(&info.key(ns, name)).await?;
        kv.map(|kv| {
            Ok(Stored {
                object: decode_as(info, &kv)?,
                revision: kv.mod_revision,
            })
        })
        .transpose()
    }

    /// Like [`Objects::get`], but a missing object is a 404.
    pub async fn must_get(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Stored, ApiError> {
        self.get(info, ns, name)
            .await?
            .ok_or_else(|| ApiError::not_found(info, name))
    }

    /// Lists objects under `ns` (all namespaces for `None`) that pass `keep`, `limit` at a time.
    pub async fn list(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        limit: Option<usize>,
        continue_token: Option<&str>,
        revision: Option<i64>,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<Page, ApiError> {
        let prefix = info.list_prefix(ns);
        let (mut start, mut revision) = match continue_token {
            Some(token) => {
                let (start, rev) = decode_continue(token, &prefix)?;
                (Some(start), rev)
            }
            None => (None, revision.unwrap_or(0)),
        };
        let want = limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        loop {
            let page = self
                .store
                .range(Range {
                    prefix: prefix.clone(),
                    start: start.clone(),
                    limit: want.map_or(0, |w| (w - items.len()).max(1)),
                    revision,
                })
                .await?;
            revision = page.revision;
            let last_key = page.kvs.last().map(|kv| kv.key.clone());
            for kv in &page.kvs {
                let object = decode_as(info, kv)?;
                if keep(&object) {
                    items.push(object);
                }
            }
            let full = want.is_some_and(|w| items.len() >= w);
            match (page.more, last_key) {
                (true, Some(last)) if full => {
                    let token = encode_continue(&format!("{last}\0"), revision);
                    return Ok(Page {
                        items,
                        revision,
                        continue_token: Some(token),
                    });
                }
                (true, Some(last)) => start = Some(format!("{last}\0")),
                _ => {
                    return Ok(Page {
                        items,
                        revision,
                        continue_token: None,
                    });
                }
            }
        }
    }

    /// Writes `object` as a new key, taking `claims` (keys in the allocation ranges) with it;
    /// 409 if the object or a claim exists.
    pub async fn create(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        object: Value,
        claims: &[String],
    ) -> Result<Value, ApiError> {
        let key = info.key(ns, name);
        let mut compare = vec![Compare::ModRevision {
            key: key.clone(),
            revision: 0,
        }];
        let mut success = vec![Op::Put {
            key: key.clone(),
            value: encode(&convert::to_storage(info, object.clone()))?,
        }];
        for claim in claims {
            compare.push(Compare::ModRevision {
                key: claim.clone(),
                revision: 0,
            });
            success.push(Op::Put {
                key: claim.clone(),
                value: Bytes::from(key.clone()),
            });
        }
        match self.store.txn(Txn { compare, success }).await? {
            TxnResult::Succeeded { revision, .. } => Ok(with_revision(object, revision)),
            TxnResult::Failed { current, .. } if current.first().is_some_and(Option::is_some) => {
                Err(ApiError::AlreadyExists {
                    resource: info.qualified_resource(),
                    name: name.into(),
                })
            }
            TxnResult::Failed { .. } => Err(ApiError::conflict(info, name)),
        }
    }

    /// Replaces the object last written at `revision`, moving its claims from `old_claims` to
    /// `new_claims`; 409 if it changed since (or a new claim is taken), 404 if gone.
    pub async fn update(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        object: Value,
        revision: i64,
        claims: ClaimMove<'_>,
    ) -> Result<Value, ApiError> {
        let (old_claims, new_claims) = (claims.held, claims.wanted);
        let key = info.key(ns, name);
        let mut compare = vec![Compare::ModRevision {
            key: key.clone(),
            revision,
        }];
        let mut success = vec![Op::Put {
            key: key.clone(),
            value: encode(&convert::to_storage(info, object.clone()))?,
        }];
        for claim in new_claims.iter().filter(|c| !old_claims.contains(c)) {
            compare.push(Compare::ModRevision {
                key: claim.clone(),
                revision: 0,
            });
            success.push(Op::Put {
                key: claim.clone(),
                value: Bytes::from(key.clone()),
            });
        }
        success.extend(
            old_claims
                .iter()
                .filter(|c| !new_claims.contains(c))
                .map(|c| Op::Delete { key: c.clone() }),
        );
        match self.store.txn(Txn { compare, success }).await? {
            TxnResult::Succeeded { revision, .. } => Ok(with_revision(object, revision)),
            TxnResult::Failed { current, .. } if current.first().is_some_and(Option::is_none) => {
                Err(ApiError::not_found(info, name))
            }
            TxnResult::Failed { .. } => Err(ApiError::conflict(info, name)),
        }
    }

    /// Deletes the object last written at `revision` and releases its `claims`; returns the
    /// revision of the deletion.
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        revision: i64,
        claims: &[String],
    ) -> Result<i64, ApiError> {
        let key = info.key(ns, name);
        let mut success = vec![Op::Delete { key: key.clone() }];
        success.extend(claims.iter().map(|c| Op::Delete { key: c.clone() }));
        let txn = Txn {
            compare: vec![Compare::ModRevision { key, revision }],
            success,
        };
        match self.store.txn(txn).await? {
            TxnResult::Succeeded { revision, .. } => Ok(revision),
            TxnResult::Failed { current, .. } if current.first().is_some_and(Option::is_none) => {
                Err(ApiError::not_found(info, name))
            }
            TxnResult::Failed { .. } => Err(ApiError::conflict(info, name)),
        }
    }
}

fn with_revision(mut object: Value, revision: i64) -> Value {
    set_resource_version(&mut object, revision);
    object
}

/// A continue token: where the next page starts and the revision the list is read at.
fn encode_continue(start: &str, revision: i64) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE.encode(raw)
}

fn decode_continue(token: &str, prefix: &str) -> Result<(String, i64), ApiError> {
    let bad = || ApiError::BadRequest("continue key is not valid: invalid continue token".into());
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let start = value["start"]
        .as_str()
        .filter(|s| s.starts_with(prefix))
        .ok_or_else(bad)?;
    let rev = value["rv"].as_i64().ok_or_else(bad)?;
    Ok((start.to_string(), rev))
}
