use serde_json::{Value, json};

use super::*;

fn pod(spec: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": "t1", "name": "web-0"},
        "spec": spec,
    }))
    .expect("a pod")
}

fn node() -> NodeDns {
    NodeDns {
        cluster_dns: vec!["10.96.0.10".parse().expect("an address")],
        domain: "cluster.local".into(),
        host: ResolvConf::parse(
            "# comment\nnameserver 192.0.2.53\nsearch old.example\nsearch example.com\noptions edns0 ndots:2\n",
        ),
        hosts: "127.0.0.1\tlocalhost\n10.0.0.5\tmachine\n".into(),
    }
}

#[test]
fn the_node_resolv_conf_is_read_as_the_kubelet_reads_it() {
    let host = node().host;
    assert_eq!(host.nameservers, ["192.0.2.53"]);
    assert_eq!(host.searches, ["example.com"], "the last search line wins");
    assert_eq!(host.options, ["edns0", "ndots:2"]);
}

#[test]
fn cluster_first_uses_the_cluster_dns_and_search_path() {
    let text = resolv_conf(&pod(json!({})), &node()).expect("a resolv.conf");
    assert_eq!(
        text,
        "search t1.svc.cluster.local svc.cluster.local cluster.local example.com\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    let explicit = pod(json!({"dnsPolicy": "ClusterFirst"}));
    assert_eq!(
        resolv_conf(&explicit, &node()).expect("a resolv.conf"),
        text
    );
}

#[test]
fn host_network_pods_get_the_node_resolv_conf_unless_cluster_first_with_host_net() {
    let node_conf = "search example.com\nnameserver 192.0.2.53\noptions edns0 ndots:2\n";
    let host = pod(json!({"hostNetwork": true}));
    assert_eq!(
        resolv_conf(&host, &node()).expect("a resolv.conf"),
        node_conf
    );
    let default = pod(json!({"dnsPolicy": "Default"}));
    assert_eq!(
        resolv_conf(&default, &node()).expect("a resolv.conf"),
        node_conf
    );
    let with_net = pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}));
    assert!(
        resolv_conf(&with_net, &node())
            .expect("a resolv.conf")
            .contains("nameserver 10.96.0.10\n")
    );
}

#[test]
fn none_takes_only_the_dns_config() {
    let none = pod(json!({"dnsPolicy": "None", "dnsConfig": {
        "nameservers": ["1.2.3.4", "1.2.3.4", "::1"],
        "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix."],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }}));
    assert_eq!(
        resolv_conf(&none, &node()).expect("a resolv.conf"),
        "search ns1.svc.cluster-domain.example my.dns.search.suffix.\nnameserver 1.2.3.4\nnameserver ::1\noptions ndots:2 edns0\n"
    );
}

#[test]
fn dns_config_merges_into_the_policy_and_options_override() {
    let merged = pod(json!({"dnsConfig": {
        "nameservers": ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
        "searches": ["svc.cluster.local", "extra.example"],
        "options": [{"name": "ndots", "value": "1"}, {"name": "timeout", "value": "3"}],
    }}));
    assert_eq!(
        resolv_conf(&merged, &node()).expect("a resolv.conf"),
        "search t1.svc.cluster.local svc.cluster.local cluster.local example.com extra.example\nnameserver 10.96.0.10\nnameserver 192.0.2.1\nnameserver 192.0.2.2\noptions ndots:1 timeout:3\n",
        "at most three nameservers, searches without duplicates"
    );
}

#[test]
fn search_domains_are_cut_to_the_kubelet_limits() {
    let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
    let kept = within_limits(many);
    assert_eq!(kept.len(), MAX_SEARCHES);
    let long: Vec<String> = (0..30).map(|i| format!("{i:0>99}.example")).collect();
    let kept = within_limits(long);
    assert!(kept.join(" ").len() <= MAX_SEARCH_CHARS);
    assert_eq!(kept.len(), 18);
}

#[test]
fn hostile_dns_config_values_are_refused() {
    for config in [
        json!({"nameservers": ["10.0.0.1\nnameserver 6.6.6.6"]}),
        json!({"nameservers": ["not-an-ip"]}),
        json!({"searches": ["evil.example\noptions debug"]}),
        json!({"searches": ["UPPER.example"]}),
        json!({"options": [{"name": "ndots", "value": "5 debug"}]}),
        json!({"options": [{"name": "nd\nots"}]}),
        json!({"options": [{"name": ""}]}),
    ] {
        let hostile = pod(json!({"dnsPolicy": "None", "dnsConfig": config}));
        assert!(
            matches!(
                resolv_conf(&hostile, &node()),
                Err(EtcError::Invalid { .. })
            ),
            "{config}"
        );
    }
    let policy = pod(json!({"dnsPolicy": "Sometimes"}));
    assert!(resolv_conf(&policy, &node()).is_err());
}

#[test]
fn names_follow_hostname_subdomain_and_fqdn() {
    let plain = Names::of(&pod(json!({})), "cluster.local").expect("names");
    assert_eq!(plain.hostname, "web-0");
    assert_eq!((plain.domain, plain.uts.as_str()), (None, "web-0"));
    let sts = pod(json!({"hostname": "web-0", "subdomain": "web"}));
    let names = Names::of(&sts, "cluster.local").expect("names");
    assert_eq!(names.domain.as_deref(), Some("web.t1.svc.cluster.local"));
    assert_eq!(names.uts, "web-0");
    let fqdn = pod(json!({"hostname": "h", "subdomain": "web", "setHostnameAsFQDN": true}));
    let names = Names::of(&fqdn, "cluster.local").expect("names");
    assert_eq!(names.uts, "h.web.t1.svc.cluster.local");
    let long =
        pod(json!({"hostname": "a".repeat(50), "subdomain": "web", "setHostnameAsFQDN": true}));
    assert!(matches!(
        Names::of(&long, "cluster.local"),
        Err(EtcError::FqdnTooLong(_))
    ));
    for spec in [
        json!({"hostname": "a/../../b"}),
        json!({"hostname": "Bad"}),
        json!({"subdomain": "x.y"}),
    ] {
        assert!(
            Names::of(&pod(spec.clone()), "cluster.local").is_err(),
            "{spec}"
        );
    }
}

#[test]
fn a_long_pod_name_is_cut_to_a_hostname() {
    let name = format!("{}.{}", "a".repeat(62), "b".repeat(10));
    let long: Pod = serde_json::from_value(json!({"metadata": {"namespace": "t1", "name": name}}))
        .expect("a pod");
    assert_eq!(
        Names::of(&long, "cluster.local").expect("names").hostname,
        "a".repeat(62)
    );
}

#[test]
fn hosts_as_the_kubelet_writes_them() {
    let sts = pod(
        json!({"hostname": "web-0", "subdomain": "web", "hostAliases": [
            {"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
            {"ip": "10.1.2.3", "hostnames": ["foo.remote"]},
        ]}),
    );
    let names = Names::of(&sts, "cluster.local").expect("names");
    assert_eq!(
        hosts(&sts, &names, "10.244.0.5", &node()).expect("hosts"),
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.244.0.5\tweb-0.web.t1.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
    );
    let plain = pod(json!({}));
    let names = Names::of(&plain, "cluster.local").expect("names");
    assert!(
        hosts(&plain, &names, "10.244.0.6", &node())
            .expect("hosts")
            .ends_with("fe00::2\tip6-allrouters\n10.244.0.6\tweb-0\n")
    );
    let host = pod(json!({"hostNetwork": true}));
    assert_eq!(
        hosts(&host, &names, "10.0.0.5", &node()).expect("hosts"),
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n10.0.0.5\tmachine\n"
    );
}

#[test]
fn hostile_host_aliases_are_refused() {
    for alias in [
        json!({"ip": "10.0.0.1\n6.6.6.6 evil", "hostnames": ["a"]}),
        json!({"ip": "10.0.0.1", "hostnames": ["a\tb\nc"]}),
        json!({"ip": "10.0.0.1", "hostnames": ["../x"]}),
    ] {
        let hostile = pod(json!({"hostAliases": [alias]}));
        let names = Names::of(&hostile, "cluster.local").expect("names");
        assert!(
            hosts(&hostile, &names, "10.244.0.5", &node()).is_err(),
            "{alias}"
        );
    }
}
