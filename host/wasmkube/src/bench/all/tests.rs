//! Tests of the map from each bench's JSON last line to its rows, on the figures of docs/benchmarks.md.
#![allow(clippy::unwrap_used)]

use super::*;

/// The rows of `bench`'s runs read from `json`, by name.
fn measured(bench: Bench, json: &str) -> Vec<(&'static str, Option<f64>, Option<bool>)> {
    let json: Value = serde_json::from_str(json).unwrap();
    RUNS.iter()
        .filter(|run| run.bench == bench)
        .flat_map(|run| outcomes(run, &Ok(json.clone())))
        .map(|o| (o.row.name, o.measured.as_ref().ok().copied(), o.met()))
        .collect()
}

fn find(rows: &[(&str, Option<f64>, Option<bool>)], name: &str) -> (Option<f64>, Option<bool>) {
    let (_, value, met) = rows.iter().find(|(n, _, _)| *n == name).unwrap();
    (*value, *met)
}

// The api and memory lines are the last lines printed in docs/benchmarks.md; the others are
// shaped as their bench prints them (its `json!`), with the figures of that document's tables.

#[test]
fn api_rows() {
    let line = r#"{"parameters":{"objects":5000,"concurrency":32,"duration_secs":5,"rate_per_sec":1000,"cores":2},"store":{"embedded":{"create_at_1000_per_s":{"ops":5000,"ops_per_sec":999.4,"p50_us":487,"p99_us":991,"errors":0},"watch_delivery":{"ops":5000,"ops_per_sec":999.4,"p50_us":499,"p99_us":1026,"errors":0},"create_32_clients":{"ops":69946,"ops_per_sec":13983.7,"p50_us":2279,"p99_us":3327,"errors":0},"get_32_clients":{"ops":673666,"ops_per_sec":134559.6,"p50_us":166,"p99_us":1201,"errors":0},"range_of_1000_keys":{"ops":4381,"ops_per_sec":876.0,"p50_us":1071,"p99_us":2221,"errors":0}},"etcd":{"create_at_1000_per_s":{"ops":5000,"ops_per_sec":999.6,"p50_us":773,"p99_us":2400,"errors":0},"watch_delivery":{"ops":5000,"ops_per_sec":999.6,"p50_us":810,"p99_us":2434,"errors":0},"create_32_clients":{"ops":45380,"ops_per_sec":9074.0,"p50_us":2970,"p99_us":12160,"errors":0},"get_32_clients":{"ops":71942,"ops_per_sec":14373.9,"p50_us":1787,"p99_us":8281,"errors":0},"range_of_1000_keys":{"ops":1824,"ops_per_sec":364.6,"p50_us":2377,"p99_us":8952,"errors":0}}},"api":{"embedded":{"create_32_clients":{"ops":5000,"ops_per_sec":8388.5,"p50_us":3766,"p99_us":6323,"errors":0},"get_32_clients":{"ops":5000,"ops_per_sec":19049.2,"p50_us":1668,"p99_us":2756,"errors":0},"list_all_5000":{"ops":5,"ops_per_sec":8.7,"p50_us":107548,"p99_us":144241,"errors":0},"list_page_of_500":{"ops":50,"ops_per_sec":121.3,"p50_us":8103,"p99_us":10479,"errors":0},"update_32_clients":{"ops":5000,"ops_per_sec":6620.1,"p50_us":4780,"p99_us":7666,"errors":0},"delete_32_clients":{"ops":5000,"ops_per_sec":10916.4,"p50_us":2921,"p99_us":4546,"errors":0},"create_at_1000_per_s":{"ops":5000,"ops_per_sec":999.3,"p50_us":1800,"p99_us":3809,"errors":0},"watch_delivery_at_1000_per_s":{"ops":5000,"ops_per_sec":999.4,"p50_us":1776,"p99_us":3786,"errors":0}},"etcd":{"create_32_clients":{"ops":5000,"ops_per_sec":3408.3,"p50_us":9093,"p99_us":16258,"errors":0},"get_32_clients":{"ops":5000,"ops_per_sec":9244.4,"p50_us":3256,"p99_us":8669,"errors":0},"list_all_5000":{"ops":5,"ops_per_sec":7.8,"p50_us":133162,"p99_us":137632,"errors":0},"list_page_of_500":{"ops":50,"ops_per_sec":94.3,"p50_us":10248,"p99_us":14489,"errors":0},"update_32_clients":{"ops":5000,"ops_per_sec":2933.2,"p50_us":10711,"p99_us":18254,"errors":0},"delete_32_clients":{"ops":5000,"ops_per_sec":4206.4,"p50_us":7189,"p99_us":14217,"errors":0},"create_at_1000_per_s":{"ops":5000,"ops_per_sec":999.0,"p50_us":3217,"p99_us":11122,"errors":0},"watch_delivery_at_1000_per_s":{"ops":5000,"ops_per_sec":999.3,"p50_us":3142,"p99_us":11055,"errors":0}}},"target":{"name":"api create p99 at 1000/s on the embedded store","limit_us":5000,"p99_us":3809,"met":true}}"#;
    let rows = measured(Bench::Api, line);
    assert_eq!(
        find(&rows, "API create @ 1000/s, embedded store: p99 µs"),
        (Some(3809.0), Some(true))
    );
    // That line predates the RBAC rows: not measured, so not met.
    assert_eq!(
        find(&rows, "API create @ 1000/s: RBAC on/off p99"),
        (None, Some(false))
    );
    let with_rbac = r#"{"api":{"embedded":{"create_at_1000_per_s":{"p99_us":14356},"create_at_1000_per_s_bound_user":{"p99_us":13645}}}}"#;
    let (ratio, met) = find(
        &measured(Bench::Api, with_rbac),
        "API create @ 1000/s: RBAC on/off p99",
    );
    assert!((ratio.unwrap() - 13645.0 / 14356.0).abs() < 1e-9);
    assert_eq!(met, Some(true));
}

#[test]
fn memory_rows() {
    let line = r#"{"pods":100,"idle_seconds":30,"rss_idle_mb":93.65625,"rss_anon_idle_mb":36.88671875,"rss_file_idle_mb":56.76953125,"rss_idle_peak_mb":170.0625,"rss_100_pods_mb":108.96875,"rss_anon_100_pods_mb":50.140625,"rss_file_100_pods_mb":58.828125,"rss_100_pods_peak_mb":112.38671875,"rss_after_delete_mb":109.8984375,"ready_secs":31.632028538,"rss_restart_idle_mb":100.97265625,"rss_anon_restart_idle_mb":49.44921875,"rss_file_restart_idle_mb":51.5234375,"rss_restart_idle_peak_mb":117.93359375}"#;
    let rows = measured(Bench::Memory, line);
    assert_eq!(
        find(&rows, "wasmkube up RSS, idle: MB"),
        (Some(93.65625), Some(false))
    );
    assert_eq!(
        find(&rows, "wasmkube up RSS, 100 pods: MB"),
        (Some(108.96875), Some(false))
    );
}

#[test]
fn scheduler_rows() {
    // Shaped as `bench scheduler` prints them; figures of the 5000-node runs at `798efe6`.
    let plain = r#"{"nodes":5000,"pods":10000,"workload":"plain pods","policy":"wasm","pods_per_sec":1435.0,"p50_ms":10.2,"p99_ms":32.0,"bound":10000,"errors":0,"native_pods_per_sec":1660.0,"native_p50_ms":6.9,"native_p99_ms":17.2,"wasm_native_ratio":1.16}"#;
    let rows = measured(Bench::Scheduler, plain);
    assert_eq!(
        find(&rows, "scheduler plain, 5000 nodes, Wasm: pods/s"),
        (Some(1435.0), Some(false))
    );
    assert_eq!(
        find(&rows, "scheduler plain: Wasm/native time"),
        (Some(1.16), Some(false))
    );
    let (p50, met) = find(&rows, "scheduler plain: Wasm/native latency p50");
    assert!((p50.unwrap() - 10.2 / 6.9).abs() < 1e-9);
    assert_eq!(met, Some(false));
    let swap = r#"{"nodes":5000,"pods":10000,"policy":"wasm","pods_per_sec":998.0,"bound":10000,"errors":0,"swap_in_force_ms":[32.6,6.1],"preferred_during_swap":3652}"#;
    let rows = measured(Bench::Scheduler, swap);
    assert_eq!(
        find(&rows, "policy swap @ 1000 pods/s: in force, ms"),
        (Some(32.6), Some(true))
    );
    assert_eq!(
        find(&rows, "policy swap: pods not bound"),
        (Some(0.0), Some(true))
    );
    assert_eq!(
        find(&rows, "policy swap: bindings refused"),
        (Some(0.0), Some(true))
    );
    // A run with no native policy has no ratio to give.
    assert_eq!(
        find(&rows, "scheduler plain: Wasm/native time"),
        (None, Some(false))
    );
}

#[test]
fn node_and_services_rows() {
    let node = r#"{"pods":100,"at_once_p50_ms":3285.0,"at_once_p99_ms":5145.0,"cpu_ms_per_pod":80.0,"one_by_one_p50_ms":95.3,"one_by_one_p99_ms":109.7,"idle_rss_mb":27.7,"idle_cpu_percent":0.1,"adopted":100,"adopt_ms":129.0}"#;
    let rows = measured(Bench::Node, node);
    assert_eq!(
        find(&rows, "pod start, one by one: p50 ms"),
        (Some(95.3), Some(false))
    );
    assert_eq!(
        find(&rows, "node agent RSS, 100 pods: MB"),
        (Some(27.7), Some(true))
    );
    let services = r#"{"bench":"services","services":1000,"endpoints":10,"change_p50_ms":51.9,"change_p99_ms":66.1}"#;
    assert_eq!(
        find(
            &measured(Bench::Services, services),
            "Service change in force, 1000 × 10: p99 ms"
        ),
        (Some(66.1), Some(true))
    );
}

#[test]
fn a_failed_bench_gives_null_rows_that_missed() {
    let run = RUNS.iter().find(|run| run.bench == Bench::Memory).unwrap();
    let rows = outcomes(run, &Err("exit status: 1: not root".to_owned()));
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(
            row.json(),
            json!({"name": row.row.name, "measured": null, "target": row.row.target.json(),
                "met": false, "error": "exit status: 1: not root"})
        );
    }
    let text = table(&rows);
    assert!(text.lines().nth(1).unwrap().ends_with("NO"), "{text}");
}

#[test]
fn rows_without_a_target_are_never_met_nor_missed() {
    let dns = r#"{"bench":"dns","services":1000,"queries_per_second":78068.0,"p99_ms":0.366}"#;
    assert_eq!(
        find(&measured(Bench::Dns, dns), "DNS: queries/s"),
        (Some(78068.0), None)
    );
}
