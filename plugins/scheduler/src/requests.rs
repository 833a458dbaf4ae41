//! Resource amounts: node allocatable and pod requests as the scheduler counts them
//! (Kubernetes' `Resource` and `PodRequests`, init containers and sidecars included).

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::core::v1::{Container, PodSpec};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use wasmkube_sdk::quantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
const PODS: &str = "pods";

/// What scoring counts for a container that requests no cpu or memory.
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// Amounts of resources: cpu in millicores, the others in units (bytes, counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended resources, hugepages and other scalar resources, sorted by name.
    pub scalars: Vec<(String, i64)>,
}

impl Resources {
    /// A resource list as the scheduler reads it (`Resource.Add`): the names it does not
    /// know and that are not scalar resources are left out.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut resources = Resources::default();
        for (name, q) in list {
            resources.add_one(name, amount(name, q));
        }
        resources
    }

    fn add_one(&mut self, name: &str, value: i64) {
        match name {
            CPU => self.cpu += value,
            MEMORY => self.memory += value,
            EPHEMERAL_STORAGE => self.ephemeral_storage += value,
            PODS => self.pods += value,
            _ if is_scalar(name) => {
                match self.scalars.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
                    Ok(i) => self.scalars[i].1 += value,
                    Err(i) => self.scalars.insert(i, (name.to_string(), value)),
                }
            }
            _ => {}
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (name, value) in &other.scalars {
            self.add_one(name, *value);
        }
    }

    pub fn subtract(&mut self, other: &Resources) {
        self.cpu -= other.cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (name, value) in &other.scalars {
            self.add_one(name, -value);
        }
    }

    /// A scalar resource's amount (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar_if_present(name).unwrap_or(0)
    }

    pub fn scalar_if_present(&self, name: &str) -> Option<i64> {
        self.scalars
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.scalars[i].1)
    }
}

/// A quantity in the unit the scheduler counts the resource in (0 when it does not parse).
fn amount(name: &str, q: &Quantity) -> i64 {
    let value = if name == CPU {
        quantity::milli(&q.0)
    } else {
        quantity::units(&q.0)
    };
    value.unwrap_or(0)
}

/// Kubernetes' `IsScalarResourceName`: extended resources, hugepages, `kubernetes.io/`
/// prefixed and attachable-volume resources.
pub fn is_scalar(name: &str) -> bool {
    is_extended(name)
        || name.starts_with("hugepages-")
        || name.contains("kubernetes.io/")
        || name.starts_with("attachable-volumes-")
}

/// Kubernetes' `IsExtendedResourceName`: a domain-prefixed name outside `kubernetes.io/`.
pub fn is_extended(name: &str) -> bool {
    let Some((domain, rest)) = name.split_once('/') else {
        return false;
    };
    !name.contains("kubernetes.io/")
        && !name.starts_with("requests.")
        && !domain.is_empty()
        && !rest.is_empty()
        && !rest.contains('/')
}

/// A pod's requests, computed once when it is placed and once per cycle for the pod being
/// scheduled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRequest {
    /// Kubernetes' `PodRequests`: overhead included.
    pub requests: Resources,
    /// cpu and memory with 100m and 200Mi for containers that request none (for scoring).
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
}

impl PodRequest {
    pub fn of(spec: &PodSpec) -> PodRequest {
        let requests = aggregate(spec, false);
        let non_zero = aggregate(spec, true);
        let get = |list: &BTreeMap<&str, i64>, name| list.get(name).copied().unwrap_or(0);
        let mut resources = Resources::default();
        for (name, value) in &requests {
            resources.add_one(name, *value);
        }
        PodRequest {
            requests: resources,
            non_zero_cpu: get(&non_zero, CPU),
            non_zero_memory: get(&non_zero, MEMORY),
        }
    }

    /// The request scoring uses for a resource: with defaults for cpu and memory (`non_zero`),
    /// or as requested.
    pub fn get(&self, name: &str, non_zero: bool) -> i64 {
        match name {
            CPU if non_zero => self.non_zero_cpu,
            MEMORY if non_zero => self.non_zero_memory,
            CPU => self.requests.cpu,
            MEMORY => self.requests.memory,
            EPHEMERAL_STORAGE => self.requests.ephemeral_storage,
            _ => self.requests.scalar(name),
        }
    }
}

/// Kubernetes' `PodRequests`: the sum of the containers' requests (restartable init containers,
/// i.e. sidecars, included), at least each init container's request plus the sidecars started
/// before it, plus the pod overhead. With `non_zero`, containers that do not request cpu or
/// memory count the scheduler's defaults for them.
fn aggregate(spec: &PodSpec, non_zero: bool) -> BTreeMap<&str, i64> {
    let mut sum: BTreeMap<&str, i64> = BTreeMap::new();
    for container in &spec.containers {
        add_lists(&mut sum, &container_requests(container, non_zero));
    }
    let mut sidecars: BTreeMap<&str, i64> = BTreeMap::new();
    let mut init_floor: BTreeMap<&str, i64> = BTreeMap::new();
    for container in spec.init_containers.iter().flatten() {
        let requests = container_requests(container, non_zero);
        let need = if container.restart_policy.as_deref() == Some("Always") {
            add_lists(&mut sum, &requests);
            add_lists(&mut sidecars, &requests);
            sidecars.clone()
        } else {
            let mut need = requests;
            add_lists(&mut need, &sidecars);
            need
        };
        for (name, value) in need {
            let floor = init_floor.entry(name).or_insert(value);
            *floor = (*floor).max(value);
        }
    }
    for (name, value) in init_floor {
        let total = sum.entry(name).or_insert(value);
        *total = (*total).max(value);
    }
    for (name, q) in spec.overhead.iter().flatten() {
        *sum.entry(name).or_insert(0) += amount(name, q);
    }
    sum
}

fn container_requests(container: &Container, non_zero: bool) -> BTreeMap<&str, i64> {
    let mut list: BTreeMap<&str, i64> = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .into_iter()
        .flatten()
        .map(|(name, q)| (name.as_str(), amount(name, q)))
        .collect();
    if non_zero {
        list.entry(CPU).or_insert(DEFAULT_MILLI_CPU);
        list.entry(MEMORY).or_insert(DEFAULT_MEMORY);
    }
    list
}

fn add_lists<'a>(into: &mut BTreeMap<&'a str, i64>, other: &BTreeMap<&'a str, i64>) {
    for (name, value) in other {
        *into.entry(name).or_insert(0) += value;
    }
}
