//! Table tests: columns and cells as kubectl users know them.

use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::resource::{Registry, builtins};

#[test]
fn human_durations_match_kubernetes() {
    let cases = [
        (5, "5s"),
        (119, "119s"),
        (200, "3m20s"),
        (600, "10m"),
        (3 * 3600 + 1200, "3h20m"),
        (30 * 3600, "30h"),
        (2 * 86400 + 5 * 3600, "2d5h"),
        (120 * 86400, "120d"),
        (800 * 86400, "2y70d"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(secs), want, "{secs}s");
    }
}

#[test]
fn pod_rows() {
    let registry = Registry::new(builtins());
    let info = registry.by_kind("v1", "Pod").expect("built-in");
    let now = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 1, 0)
        .single()
        .expect("valid");
    let pod = json!({
        "metadata": {"name": "web-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
            {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
    });
    assert_eq!(
        row_cells(info, &pod, now),
        vec![
            json!("web-1"),
            json!("1/2"),
            json!("CrashLoopBackOff"),
            json!(3),
            json!("60s"),
            json!("10.0.0.5"),
            json!("n1"),
            json!("<none>"),
            json!("<none>")
        ]
    );
    assert_eq!(column_definitions(info).as_array().map(Vec::len), Some(9));
}

#[test]
fn plugin_rows_show_the_shadow() {
    let registry = Registry::new(builtins());
    let info = registry
        .by_kind("wasmkube.dev/v1alpha1", "Plugin")
        .expect("built-in");
    let now = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 1, 0)
        .single()
        .expect("valid");
    let digest = |c: &str| format!("sha256:{}", c.repeat(64));
    let mut plugin = json!({
        "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"kind": "Controller"},
        "status": {"phase": "Running", "activeDigest": digest("a"), "traps": 1,
            "shadow": {"digest": digest("b"), "divergences": 7}}
    });
    let row = |p: &serde_json::Value| row_cells(info, p, now)[1..7].to_vec();
    assert_eq!(
        row(&plugin),
        [
            json!("Controller"),
            json!("aaaaaaaaaaaa"),
            json!("Running"),
            json!(1),
            json!("bbbbbbbbbbbb"),
            json!("7")
        ]
    );
    plugin["status"]["shadow"] = json!({"digest": digest("b"), "phase": "Failed"});
    assert_eq!(row(&plugin)[5], json!("<none>"));
    plugin["status"]
        .as_object_mut()
        .expect("a status")
        .remove("shadow");
    assert_eq!(row(&plugin)[4..], [json!("<none>"), json!("<none>")]);
}

#[test]
fn every_kind_has_one_cell_per_column() {
    let registry = Registry::new(builtins());
    for info in registry.all() {
        let cells = row_cells(info, &json!({"metadata": {"name": "x"}}), Utc::now());
        assert_eq!(
            Some(cells.len()),
            column_definitions(info).as_array().map(Vec::len),
            "{}",
            info.kind
        );
    }
}

#[test]
fn crd_printer_columns() {
    let registry = Registry::new(builtins());
    let mut info = (**registry.by_kind("v1", "ConfigMap").expect("built-in")).clone();
    info.custom = true;
    info.printer_columns = vec![
        PrinterColumn {
            name: "Replicas".into(),
            kind: "integer".into(),
            json_path: ".spec.replicas".into(),
            priority: 0,
            description: String::new(),
        },
        PrinterColumn {
            name: "First".into(),
            kind: "string".into(),
            json_path: ".spec.items[0].name".into(),
            priority: 1,
            description: String::new(),
        },
        PrinterColumn {
            name: "Age".into(),
            kind: "date".into(),
            json_path: ".metadata.creationTimestamp".into(),
            priority: 0,
            description: String::new(),
        },
    ];
    let now = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 30)
        .single()
        .expect("valid");
    let obj = json!({"metadata": {"name": "s", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"replicas": 3, "items": [{"name": "a"}]}});
    assert_eq!(
        row_cells(&info, &obj, now),
        vec![json!("s"), json!(3), json!("a"), json!("30s")]
    );
    assert_eq!(column_definitions(&info).as_array().map(Vec::len), Some(4));
}
