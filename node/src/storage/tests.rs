use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::provision::{volume, wanted};
use super::*;
use crate::api::{Connection, Credential};

fn claim() -> Value {
    json!({
        "metadata": {"name": "data", "namespace": "apps", "uid": "u-1", "resourceVersion": "7",
            "annotations": {SELECTED_NODE: "n1"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
            "resources": {"requests": {"storage": "1Gi"}}},
    })
}

fn class(policy: Option<&str>) -> Value {
    let mut class = json!({"metadata": {"name": "local-path"}, "provisioner": PROVISIONER});
    if let Some(policy) = policy {
        class["reclaimPolicy"] = json!(policy);
    }
    class
}

fn local(node: &str) -> LocalPath {
    let connection = Connection {
        server: "https://127.0.0.1:1".into(),
        more_servers: Vec::new(),
        credential: Credential::Token("t".into()),
        ca_pem: None,
    };
    LocalPath {
        api: Api::new(&connection).expect("client"),
        node: node.into(),
        dir: PathBuf::from("/var/lib/wk/storage"),
    }
}

#[test]
fn a_provisioned_volume_is_the_claims_request_pinned_to_the_node() {
    let pv = volume(
        &claim(),
        &class(None),
        "n1",
        Path::new("/var/lib/wk/storage"),
    );
    assert_eq!(pv["metadata"]["name"], "pvc-u-1");
    assert_eq!(pv["metadata"]["annotations"][PROVISIONED_BY], PROVISIONER);
    assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
    assert_eq!(pv["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["storageClassName"], "local-path");
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
    assert_eq!(
        pv["spec"]["claimRef"],
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "apps",
            "name": "data", "uid": "u-1", "resourceVersion": "7"})
    );
    assert_eq!(pv["spec"]["local"]["path"], "/var/lib/wk/storage/pvc-u-1");
    let decoded = decode(&pv).expect("a valid PersistentVolume");
    assert_eq!(
        host_dir(&decoded),
        Some(PathBuf::from("/var/lib/wk/storage/pvc-u-1"))
    );
    let retained = volume(&claim(), &class(Some("Retain")), "n1", Path::new("/d"));
    assert_eq!(retained["spec"]["persistentVolumeReclaimPolicy"], "Retain");
}

#[test]
fn node_affinity_admits_the_pinned_node_only() {
    let pv = decode(&volume(&claim(), &class(None), "n1", Path::new("/d"))).expect("decodes");
    let labels = |node: &str| BTreeMap::from([(HOSTNAME_LABEL.to_string(), node.to_string())]);
    assert!(admits(&pv, &labels("n1"), "n1"));
    assert!(!admits(&pv, &labels("n2"), "n2"));
    assert!(!admits(&pv, &BTreeMap::new(), "n1"));
    let anywhere = decode(&json!({"metadata": {"name": "h"},
        "spec": {"hostPath": {"path": "/srv/h"}}}))
    .expect("decodes");
    assert!(admits(&anywhere, &BTreeMap::new(), "n2"));
    assert_eq!(host_dir(&anywhere), Some(PathBuf::from("/srv/h")));
    let nfs = decode(&json!({"metadata": {"name": "x"},
        "spec": {"nfs": {"server": "s", "path": "/"}}}))
    .expect("decodes");
    assert_eq!(host_dir(&nfs), None);
}

#[tokio::test]
async fn a_node_owns_only_the_volumes_it_provisioned_for_itself() {
    let pv = volume(&claim(), &class(None), "n1", Path::new("/d"));
    assert!(local("n1").owns(&decode(&pv).expect("decodes")));
    assert!(!local("n2").owns(&decode(&pv).expect("decodes")));
    let mut foreign = pv.clone();
    foreign["metadata"]["annotations"][PROVISIONED_BY] = json!("other.dev/provisioner");
    assert!(!local("n1").owns(&decode(&foreign).expect("decodes")));
    let mut unpinned = pv;
    unpinned["spec"]["nodeAffinity"] = Value::Null;
    assert!(!local("n1").owns(&decode(&unpinned).expect("decodes")));
}

#[test]
fn only_unbound_claims_selected_for_the_node_are_provisioned() {
    assert!(wanted(&claim(), "n1"));
    assert!(!wanted(&claim(), "n2"));
    let mut bound = claim();
    bound["spec"]["volumeName"] = json!("pvc-u-1");
    assert!(!wanted(&bound, "n1"));
    let mut deleting = claim();
    deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    assert!(!wanted(&deleting, "n1"));
    let mut unselected = claim();
    unselected["metadata"]["annotations"] = json!({});
    assert!(!wanted(&unselected, "n1"));
}
