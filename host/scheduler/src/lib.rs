//! The wasmkube scheduler: a native framework (queue, node cache with assumed pods, profiles,
//! binding, events) around scheduling policies that run as Wasm components behind the
//! `scheduler-plugin` world, or natively for comparison. See `docs/scheduler.md`.

pub mod cache;
pub mod cycle;
pub mod policy;
pub mod profile;
mod profiles;
pub mod queue;
pub mod report;
pub mod scheduler;
pub mod shadow;
pub mod source;

use std::sync::Arc;

use tokio::sync::mpsc;
use wasmkube_apiserver::Server;
use wasmkube_controller::Manager;
use wasmkube_controller::informer::Change;
use wasmkube_model::resource::PLUGIN_GROUP;

pub use scheduler::Shared;
pub use source::Source;

/// A running scheduler; dropping it stops its tasks.
pub struct Scheduler {
    pub shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the scheduler over `manager`'s informers, with policies from `source`; it schedules
/// once pods and nodes are synced and the profiles loaded.
pub async fn start(
    server: Arc<Server>,
    manager: Arc<Manager>,
    source: Arc<dyn Source>,
) -> Option<Scheduler> {
    let (trapped_tx, trapped_rx) = mpsc::unbounded_channel();
    let shared = Shared::new(server.clone(), manager.clone(), trapped_tx)?;
    let registry = server.registry();
    let nodes = manager.informer(&registry.by_kind("v1", "Node")?.clone());
    let pods = manager.informer(&registry.by_kind("v1", "Pod")?.clone());
    let (dirty_tx, dirty_rx) = mpsc::unbounded_channel();
    for plural in ["schedulerprofiles", "plugins"] {
        let info = registry.get(PLUGIN_GROUP, "v1alpha1", plural)?.clone();
        let informer = manager.informer(&info);
        informer.wait_synced().await;
        let dirty = dirty_tx.clone();
        informer.add_handler(Arc::new(move |_: &Change| {
            let _ = dirty.send(());
        }));
    }
    nodes.wait_synced().await;
    pods.wait_synced().await;
    let s = shared.clone();
    nodes.add_handler(Arc::new(move |change: &Change| s.on_node(change)));
    let s = shared.clone();
    pods.add_handler(Arc::new(move |change: &Change| s.on_pod(change)));
    let (swaps_tx, swaps_rx) = mpsc::unbounded_channel();
    let _ = dirty_tx.send(());
    let s = shared.clone();
    server
        .metrics
        .set_collector("scheduler", Box::new(move |out| s.stats().render(out)));
    let tasks = vec![
        tokio::spawn(profiles::run(
            shared.clone(),
            source,
            swaps_tx,
            dirty_rx,
            trapped_rx,
        )),
        tokio::spawn(scheduler::run(shared.clone(), swaps_rx)),
        tokio::spawn(profiles::write_status(shared.clone())),
    ];
    Some(Scheduler { shared, tasks })
}
