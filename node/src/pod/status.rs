//! A pod's status from its containers, as the kubelet computes it: phase, conditions,
//! container statuses, IPs and QoS class.

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::slot::{Ended, RestartPolicy, Slot, State};

fn stamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What the status is computed from besides the containers.
pub struct Facts<'a> {
    pub pod: &'a Pod,
    pub slots: &'a [Slot],
    pub pod_ip: Option<&'a str>,
    pub host_ip: &'a str,
    pub start_time: DateTime<Utc>,
    pub policy: RestartPolicy,
}

/// Pending, Running, Succeeded or Failed.
pub fn phase(slots: &[Slot], policy: RestartPolicy) -> &'static str {
    let init_failed = slots
        .iter()
        .any(|s| s.init && matches!(&s.state, State::Terminated(e) if e.exit.code != 0));
    if init_failed && policy == RestartPolicy::Never {
        return "Failed";
    }
    if slots.iter().any(|s| s.init && !s.succeeded()) {
        return "Pending";
    }
    let main: Vec<&Slot> = slots.iter().filter(|s| !s.init).collect();
    if !main.is_empty() && main.iter().all(|s| matches!(s.state, State::Terminated(_))) {
        let all_zero = main.iter().all(|s| s.succeeded());
        return if all_zero { "Succeeded" } else { "Failed" };
    }
    let has_run = |s: &&Slot| {
        s.running().is_some() || s.last.is_some() || matches!(s.state, State::Terminated(_))
    };
    if main.iter().any(has_run) {
        "Running"
    } else {
        "Pending"
    }
}

/// The pod's QoS class from its containers' requests and limits.
pub fn qos_class(pod: &Pod) -> &'static str {
    let containers = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers));
    let mut any = false;
    let mut guaranteed = true;
    for container in containers {
        let resources = container.resources.as_ref();
        let requests = resources.and_then(|r| r.requests.as_ref());
        let limits = resources.and_then(|r| r.limits.as_ref());
        for name in ["cpu", "memory"] {
            let request = requests.and_then(|m| m.get(name)).map(|q| q.0.as_str());
            let limit = limits.and_then(|m| m.get(name)).map(|q| q.0.as_str());
            any |= request.is_some() || limit.is_some();
            // A limit without a request defaults the request to the limit.
            match (request, limit) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn terminated(e: &Ended) -> Value {
    json!({"terminated": {
        "exitCode": e.exit.code, "reason": e.reason(),
        "startedAt": stamp(&e.started), "finishedAt": stamp(&e.exit.at),
        "containerID": format!("containerd://{}", e.id),
    }})
}

fn container_status(slot: &Slot) -> Value {
    let state = match &slot.state {
        State::Waiting {
            reason, message, ..
        } => {
            let mut waiting = json!({"reason": reason});
            if let Some(message) = message {
                waiting["message"] = json!(message);
            }
            json!({"waiting": waiting})
        }
        State::Running { started, .. } => json!({"running": {"startedAt": stamp(started)}}),
        State::Terminated(e) => terminated(e),
    };
    let id = match &slot.state {
        State::Running { id, .. } => Some(id.as_str()),
        State::Terminated(e) => Some(e.id.as_str()),
        State::Waiting { .. } => slot.last.as_ref().map(|e| e.id.as_str()),
    };
    let mut status = json!({
        "name": slot.name, "image": slot.image, "imageID": "",
        "state": state,
        "lastState": slot.last.as_ref().map(terminated).unwrap_or_else(|| json!({})),
        "ready": slot.ready && slot.running().is_some(),
        "restartCount": slot.restarts,
        "started": slot.running().is_some(),
    });
    if let Some(id) = id {
        status["containerID"] = json!(format!("containerd://{id}"));
    }
    status
}

/// A condition, keeping its lastTransitionTime when its status did not change.
fn condition(pod: &Pod, kind: &str, ok: bool, reason: Option<&str>, now: &str) -> Value {
    let status = if ok { "True" } else { "False" };
    let previous = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == kind));
    let since = match previous {
        Some(p) if p.status == status => p
            .last_transition_time
            .as_ref()
            .map(|t| stamp(&t.0))
            .unwrap_or_else(|| now.to_string()),
        _ => now.to_string(),
    };
    let mut value = json!({"type": kind, "status": status, "lastProbeTime": null,
        "lastTransitionTime": since});
    if let Some(reason) = reason.filter(|_| !ok) {
        value["reason"] = json!(reason);
    }
    value
}

/// The status the pod should have now.
pub fn compute(facts: &Facts) -> Value {
    let now = stamp(&Utc::now());
    let slots = facts.slots;
    let phase = phase(slots, facts.policy);
    let initialized = slots.iter().filter(|s| s.init).all(Slot::succeeded);
    let main: Vec<&Slot> = slots.iter().filter(|s| !s.init).collect();
    let ready = main.iter().all(|s| s.ready && s.running().is_some()) || (phase == "Succeeded");
    let containers_ready = ready && phase != "Succeeded";
    let scheduled = facts
        .pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        .unwrap_or_else(|| json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
    let not_ready = if main.is_empty() {
        None
    } else {
        Some("ContainersNotReady")
    };
    let conditions = vec![
        condition(
            facts.pod,
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            &now,
        ),
        condition(facts.pod, "Ready", containers_ready, not_ready, &now),
        condition(
            facts.pod,
            "ContainersReady",
            containers_ready,
            not_ready,
            &now,
        ),
        scheduled,
    ];
    let init: Vec<Value> = slots
        .iter()
        .filter(|s| s.init)
        .map(container_status)
        .collect();
    let containers: Vec<Value> = main.iter().map(|s| container_status(s)).collect();
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": facts.host_ip,
        "hostIPs": [{"ip": facts.host_ip}],
        "startTime": stamp(&facts.start_time),
        "containerStatuses": containers,
        "qosClass": qos_class(facts.pod),
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init);
    }
    if let Some(ip) = facts.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Exit;

    fn pod(resources: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources}]}}))
        .unwrap_or_default()
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
            )),
            "Burstable"
        );
    }

    #[test]
    fn phases_follow_the_containers() {
        let now = tokio::time::Instant::now();
        let mut app = Slot::new("app", "busybox", false);
        assert_eq!(phase(&[app.clone()], RestartPolicy::Always), "Pending");
        app.started("c".into(), Utc::now());
        assert_eq!(phase(&[app.clone()], RestartPolicy::Always), "Running");
        let mut done = app.clone();
        done.ended(
            Exit {
                code: 0,
                at: Utc::now(),
                oom_killed: false,
            },
            RestartPolicy::Never,
            "p",
            now,
        );
        assert_eq!(phase(&[done], RestartPolicy::Never), "Succeeded");
        let mut failed = app.clone();
        failed.ended(
            Exit {
                code: 3,
                at: Utc::now(),
                oom_killed: false,
            },
            RestartPolicy::Never,
            "p",
            now,
        );
        assert_eq!(phase(&[failed.clone()], RestartPolicy::Never), "Failed");
        let status = container_status(&failed);
        assert_eq!(status["state"]["terminated"]["exitCode"], 3);
        let init = Slot::new("setup", "busybox", true);
        assert_eq!(phase(&[init, app], RestartPolicy::Always), "Pending");
    }
}
