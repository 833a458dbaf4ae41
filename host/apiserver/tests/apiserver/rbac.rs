//! RBAC writes through `app()`: each write returns with its grant in force, however many come at once.

use std::sync::Arc;

use http::StatusCode;
use serde_json::json;
use wasmkube_apiserver::auth::{Attributes, User, current_index};

use crate::common::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_written_together_are_each_in_force_when_their_write_returns() {
    let api = Arc::new(Api::new().await);
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    });
    let (code, body) = api
        .call(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            Some(role),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let writes = (0..24).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            let binding = json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": format!("rb-{i}"), "namespace": "default"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-reader"},
                "subjects": [{"kind": "User", "name": format!("user-{i}")}],
            });
            let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings";
            let (code, body) = api.call("POST", path, Some(binding)).await;
            assert_eq!(code, StatusCode::CREATED, "{body}");
            let get = Attributes::resource("get", "", "pods", "default", "p");
            let user = User::new(&format!("user-{i}"), []);
            assert!(
                current_index(&api.server).allows(&user, &get),
                "user-{i}'s binding is in force once its create returned"
            );
        })
    });
    for write in writes.collect::<Vec<_>>() {
        write.await.expect("the write's task");
    }
    let stranger = User::new("user-24", []);
    let get = Attributes::resource("get", "", "pods", "default", "p");
    assert!(!current_index(&api.server).allows(&stranger, &get));
}
