//! A scheduling policy as the scheduler drives it: one trait over a Wasm component instance and a
//! native (in-process) policy built from the same SDK crate, for tests and comparison.

use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt as _;
use wasmkube_apiserver::plugin_logs::{Kind, Writer};
use wasmkube_runtime::{
    CallError, Capabilities, CycleConfig, Delta, Failure, HostApi, Limits, Module, NodeScore,
    PolicyInstance, RuntimeError, Verdict,
};
use wasmkube_sdk::scheduling::{self, Policy as SdkPolicy};
use wasmkube_sdk::{ApiError, Context, EventType, Gvr, Host, LogLevel, ObjectKey};

/// A policy instance: its own view of the cluster, fed by deltas; one call at a time.
#[async_trait]
pub trait Policy: Send {
    /// What the policy offers.
    fn capabilities(&self) -> &Capabilities;
    /// Where the policy comes from: the module digest, or `native`.
    fn version(&self) -> &str;
    async fn apply(&mut self, deltas: &[Delta]) -> Result<(), CallError>;
    /// Filters and scores for `pod` (JSON; a `String` because wasmtime's binding takes one).
    #[allow(clippy::ptr_arg)]
    async fn schedule(&mut self, pod: &String, config: &CycleConfig) -> Result<Verdict, CallError>;
}

/// A policy component instance.
pub struct WasmPolicy {
    instance: PolicyInstance,
    capabilities: Capabilities,
    /// Its Plugin's log: where its traps are written.
    log: Writer,
}

impl WasmPolicy {
    /// Instantiates `module` and asks what it offers.
    pub async fn new(
        module: &Arc<Module>,
        host: Arc<dyn HostApi>,
        limits: Limits,
        log: Writer,
    ) -> Result<WasmPolicy, PolicyError> {
        let mut instance = PolicyInstance::new(module, host, limits).await?;
        let capabilities = instance.describe().await.inspect_err(|e| trap(&log, e))?;
        log.write(Kind::Started, "loaded for a scheduling profile");
        Ok(WasmPolicy {
            instance,
            capabilities,
            log,
        })
    }
}

/// Writes a trap to the policy's log (an error the guest returned is no trap).
fn trap(log: &Writer, e: &CallError) {
    if !matches!(e, CallError::Failed(_)) {
        log.write(Kind::Trapped, &e.to_string());
    }
}

#[async_trait]
impl Policy for WasmPolicy {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn version(&self) -> &str {
        self.instance.module().digest()
    }

    async fn apply(&mut self, deltas: &[Delta]) -> Result<(), CallError> {
        let result = self.instance.apply(deltas).await;
        result.inspect_err(|e| trap(&self.log, e))
    }

    async fn schedule(&mut self, pod: &String, config: &CycleConfig) -> Result<Verdict, CallError> {
        let result = self.instance.schedule(pod, config).await;
        result.inspect_err(|e| trap(&self.log, e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Call(#[from] CallError),
}

/// An SDK policy run in-process: the same code as its component, the same JSON crossing.
pub struct NativePolicy<P: SdkPolicy> {
    policy: P,
    host: Arc<dyn HostApi>,
    capabilities: Capabilities,
}

impl<P: SdkPolicy> NativePolicy<P> {
    pub fn new(host: Arc<dyn HostApi>) -> NativePolicy<P> {
        let c = P::capabilities();
        NativePolicy {
            policy: P::default(),
            host,
            capabilities: Capabilities {
                name: c.name,
                filters: c.filters,
                scores: c.scores,
            },
        }
    }
}

#[async_trait]
impl<P: SdkPolicy + Send> Policy for NativePolicy<P> {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn version(&self) -> &str {
        "native"
    }

    async fn apply(&mut self, deltas: &[Delta]) -> Result<(), CallError> {
        for delta in deltas {
            let delta = match delta {
                Delta::NodeUpsert(text) => scheduling::Delta::node(text),
                Delta::NodeRemove(name) => Ok(scheduling::Delta::NodeRemove(name.clone())),
                Delta::PodUpsert(text) => scheduling::Delta::pod(text),
                Delta::PodRemove(k) => Ok(scheduling::Delta::PodRemove(ObjectKey {
                    namespace: k.namespace.clone(),
                    name: k.name.clone(),
                })),
            };
            if let Ok(delta) = delta {
                self.policy.apply(delta);
            }
        }
        Ok(())
    }

    async fn schedule(&mut self, pod: &String, config: &CycleConfig) -> Result<Verdict, CallError> {
        let fail = |e: wasmkube_sdk::Error| CallError::Failed(e.to_string());
        let pod = scheduling::decode("pod", pod).map_err(fail)?;
        let plugin = |c: &wasmkube_runtime::PluginConfig| scheduling::PluginConfig {
            name: c.name.clone(),
            weight: c.weight,
            args: serde_json::from_str(&c.args).unwrap_or_default(),
        };
        let config = scheduling::CycleConfig {
            filters: config.filters.iter().map(plugin).collect(),
            scores: config.scores.iter().map(plugin).collect(),
            nodes_to_find: usize::try_from(config.nodes_to_find).unwrap_or(usize::MAX),
            candidates: config.candidates.clone(),
        };
        let host = Reads(self.host.as_ref());
        let ctx = Context::new(&host);
        let verdict = self.policy.schedule(&ctx, &pod, &config).map_err(fail)?;
        Ok(Verdict {
            feasible: verdict
                .feasible
                .into_iter()
                .map(|s| NodeScore {
                    node: s.node,
                    score: s.score,
                })
                .collect(),
            failures: verdict
                .failures
                .into_iter()
                .map(|f| Failure {
                    reason: f.reason,
                    nodes: f.nodes,
                })
                .collect(),
            evaluated: verdict.evaluated,
        })
    }
}

/// The SDK's synchronous host over a runtime host whose reads answer at once (from informer
/// caches), for native policies. Writes are refused: a policy only reads.
struct Reads<'a>(&'a dyn HostApi);

fn gvr(g: &Gvr) -> wasmkube_runtime::Gvr {
    wasmkube_runtime::Gvr {
        group: g.group.clone(),
        version: g.version.clone(),
        resource: g.resource.clone(),
    }
}

fn api_error(e: wasmkube_runtime::ApiError) -> ApiError {
    ApiError {
        code: e.code,
        reason: e.reason,
        message: e.message,
    }
}

fn refused(what: &str) -> ApiError {
    ApiError {
        code: 403,
        reason: "Forbidden".into(),
        message: format!("a scheduling policy may not {what}"),
    }
}

fn would_block() -> ApiError {
    ApiError {
        code: 500,
        reason: "InternalError".into(),
        message: "the host read did not answer at once".into(),
    }
}

impl Host for Reads<'_> {
    fn get(&self, resource: &Gvr, key: &ObjectKey) -> Result<Option<String>, ApiError> {
        let key = wasmkube_runtime::ObjectKey {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        };
        match self.0.get(gvr(resource), key).now_or_never() {
            Some(result) => result.map_err(api_error),
            None => Err(would_block()),
        }
    }

    fn list(&self, resource: &Gvr, ns: &str, selector: &str) -> Result<Vec<String>, ApiError> {
        match self
            .0
            .list(gvr(resource), ns.to_string(), selector.to_string())
            .now_or_never()
        {
            Some(result) => result.map_err(api_error),
            None => Err(would_block()),
        }
    }

    fn create(&self, _: &Gvr, _: &str) -> Result<String, ApiError> {
        Err(refused("create"))
    }

    fn update(&self, _: &Gvr, _: &str) -> Result<String, ApiError> {
        Err(refused("update"))
    }

    fn update_status(&self, _: &Gvr, _: &str) -> Result<String, ApiError> {
        Err(refused("update"))
    }

    fn patch(
        &self,
        _: &Gvr,
        _: &ObjectKey,
        _: wasmkube_sdk::PatchType,
        _: &str,
    ) -> Result<String, ApiError> {
        Err(refused("patch"))
    }

    fn delete(&self, _: &Gvr, _: &ObjectKey, _: wasmkube_sdk::Propagation) -> Result<(), ApiError> {
        Err(refused("delete"))
    }

    fn emit_event(&self, _: &str, _: EventType, _: &str, _: &str) {}

    fn log(&self, _: LogLevel, message: &str) {
        tracing::debug!(target: "wasmkube::policy", "{message}");
    }

    fn now(&self) -> String {
        self.0.now()
    }
}
