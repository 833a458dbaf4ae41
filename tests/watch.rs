//! Watch at scale: a thousand watchers of pods across two `wasmkube server` hosts on one etcd,
//! each host serving them from its watch cache, see every event once and in order; a watcher that
//! never reads is ended with 410 Gone (its client re-lists) instead of being buffered for.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use wasmkube_e2e::Cluster;
use wasmkube_store::etcd::testing::EtcdServer;

const WATCHERS: usize = 1000;
/// Pods created, then each labelled: twice as many writes.
const PODS: usize = 50;
/// The last pod: a watcher that sees it has seen every write before.
const LAST: &str = "last";
const PODS_PATH: &str = "/api/v1/namespaces/default/pods";
const CONFIGMAPS_PATH: &str = "/api/v1/namespaces/default/configmaps";
const WAIT: Duration = Duration::from_secs(120);

/// An HTTPS client of one host, trusting the cluster CA and sending the admin token.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn of(host: &Cluster) -> Result<Api> {
        let ca = std::fs::read(host.dir.path().join("pki/ca.crt"))?;
        let mut token = HeaderValue::from_str(&format!("Bearer {}", host.token()?))?;
        token.set_sensitive(true);
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
            .default_headers(HeaderMap::from_iter([(AUTHORIZATION, token)]))
            .build()?;
        Ok(Api {
            http,
            base: format!("https://127.0.0.1:{}", host.port),
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "{status}: {body}");
        Ok(body)
    }

    async fn create(&self, path: &str, object: Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(url).json(&object)).await
    }

    async fn merge_patch(&self, path: &str, patch: Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = self
            .http
            .patch(url)
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string());
        self.send(request).await
    }

    async fn list_revision(&self, path: &str) -> Result<String> {
        let list = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?;
        Ok(resource_version(&list)?.to_string())
    }

    /// A watch of `path` from `version`, once the response headers arrived (the host is
    /// watching).
    async fn watch(&self, path: &str, version: &str) -> Result<reqwest::Response> {
        let url = format!(
            "{}{path}?watch=true&resourceVersion={version}&timeoutSeconds=300",
            self.base
        );
        let response = self.http.get(url).send().await?;
        ensure!(response.status().is_success(), "{}", response.status());
        Ok(response)
    }
}

fn resource_version(object: &Value) -> Result<&str> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .context("a resourceVersion")
}

/// One watch event as a watcher saw it: type, name, resourceVersion.
type Seen = (String, String, u64);

fn seen(event: &Value) -> Result<Seen> {
    let object = &event["object"];
    let version = resource_version(object)?.parse()?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let kind = event["type"].as_str().context("an event type")?;
    Ok((kind.to_string(), name.to_string(), version))
}

/// Reads watch events until `stop` says so (or the stream ends), the object's `code` of an
/// ERROR event included.
async fn read_events(
    response: reqwest::Response,
    mut stop: impl FnMut(&Value) -> bool,
) -> Result<Vec<Value>> {
    let mut body = response.bytes_stream();
    let (mut buffer, mut events) = (Vec::new(), Vec::new());
    loop {
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line)?;
            let done = stop(&event);
            events.push(event);
            if done {
                return Ok(events);
            }
        }
        match tokio::time::timeout(WAIT, body.next()).await {
            Ok(Some(chunk)) => buffer.extend_from_slice(&chunk?),
            Ok(None) => return Ok(events),
            Err(_) => bail!("no watch event for {WAIT:?} after {} events", events.len()),
        }
    }
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    })
}

/// Two hosts on one etcd and a client of each.
struct TwoHosts {
    _etcd: EtcdServer,
    hosts: [Cluster; 2],
    apis: [Api; 2],
}

fn two_hosts(runtime: &tokio::runtime::Runtime) -> Result<TwoHosts> {
    let etcd = runtime
        .block_on(EtcdServer::start())
        .context("starting etcd (run scripts/etcd.sh)")?;
    let store = format!("etcd://{}", etcd.endpoint().trim_start_matches("http://"));
    let a = Cluster::start_with(&["--store", &store])?;
    let b = a.another_host(&["--store", &store])?;
    let apis = [Api::of(&a)?, Api::of(&b)?];
    Ok(TwoHosts {
        _etcd: etcd,
        hosts: [a, b],
        apis,
    })
}

#[test]
fn a_thousand_watchers_on_two_hosts_see_every_event_once_in_order() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let cluster = two_hosts(&runtime)?;
    let apis = cluster.apis.clone();
    let result = runtime.block_on(async move {
        let from = apis[0].list_revision(PODS_PATH).await?;
        let mut watches = Vec::with_capacity(WATCHERS);
        for i in 0..WATCHERS {
            let response = apis[i % 2].watch(PODS_PATH, &from).await?;
            let is_last = |e: &Value| e["object"]["metadata"]["name"] == LAST;
            watches.push(tokio::spawn(read_events(response, is_last)));
        }
        // Writes through both hosts, remembering what each answered.
        let mut written: Vec<Seen> = Vec::new();
        for i in 0..PODS {
            let name = format!("p{i}");
            let created = apis[i % 2].create(PODS_PATH, pod(&name)).await?;
            written.push(("ADDED".into(), name, resource_version(&created)?.parse()?));
        }
        for i in 0..PODS {
            let name = format!("p{i}");
            let path = format!("{PODS_PATH}/{name}");
            let patch = json!({"metadata": {"labels": {"round": "2"}}});
            let patched = apis[(i + 1) % 2].merge_patch(&path, patch).await?;
            written.push((
                "MODIFIED".into(),
                name,
                resource_version(&patched)?.parse()?,
            ));
        }
        apis[1].create(PODS_PATH, pod(LAST)).await?;

        let mut reference: Option<Vec<Seen>> = None;
        for (i, watch) in watches.into_iter().enumerate() {
            let events = watch.await??;
            let seen: Vec<Seen> = events.iter().map(seen).collect::<Result<_>>()?;
            ensure!(
                seen.last().is_some_and(|(_, name, _)| name == LAST),
                "watcher {i} ended early after {} events",
                seen.len()
            );
            ensure!(
                seen.windows(2).all(|w| w[0].2 < w[1].2),
                "watcher {i}: events out of order or twice: {seen:?}"
            );
            for write in &written {
                ensure!(seen.contains(write), "watcher {i} missed {write:?}");
            }
            match &reference {
                None => reference = Some(seen),
                Some(first) => ensure!(
                    *first == seen,
                    "watcher {i} saw another sequence than watcher 0"
                ),
            }
        }
        Ok::<_, anyhow::Error>(())
    });
    if let Err(err) = result {
        bail!(
            "{err:#}\nfirst host's log:\n{}\nsecond host's log:\n{}",
            cluster.hosts[0].log(),
            cluster.hosts[1].log()
        );
    }
    Ok(())
}

/// ConfigMaps of half a megabyte: the watch cache's ring (16 MiB) holds a few dozen of their
/// events, the socket buffers between the host and the watcher a few more.
const BIG: usize = 512 << 10;
const UPDATES: usize = 100;

#[test]
fn a_watcher_that_never_reads_is_ended_with_410() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let cluster = two_hosts(&runtime)?;
    let apis = cluster.apis.clone();
    runtime.block_on(async move {
        let from = apis[0].list_revision(CONFIGMAPS_PATH).await?;
        let slow = apis[0].watch(CONFIGMAPS_PATH, &from).await?;
        // Another watcher that reads keeps up and sees every update.
        let reader = apis[0].watch(CONFIGMAPS_PATH, &from).await?;
        let last = format!("{}", UPDATES - 1);
        let reads = tokio::spawn(read_events(reader, move |e| {
            e["object"]["data"]["round"].as_str() == Some(last.as_str())
        }));
        let big = |round: usize| json!({"round": round.to_string(), "payload": "x".repeat(BIG)});
        let map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": big(0)});
        apis[1].create(CONFIGMAPS_PATH, map).await?;
        for round in 1..UPDATES {
            let path = format!("{CONFIGMAPS_PATH}/big");
            apis[1].merge_patch(&path, json!({"data": big(round)})).await?;
        }
        let read = reads.await??;
        ensure!(read.len() == UPDATES, "the reader saw {} events", read.len());
        // The slow watcher now reads: what was buffered for it, then 410 Gone, then the end.
        let events = read_events(slow, |_| false).await?;
        let (last, before) = events.split_last().context("no event at all")?;
        ensure!(
            last["type"] == "ERROR" && last["object"]["code"] == 410,
            "expected a 410 ERROR last, got {}",
            last["type"]
        );
        ensure!(last["object"]["reason"] == "Expired", "{}", last["object"]);
        ensure!(
            before.len() < UPDATES / 2,
            "{} of {UPDATES} events were buffered for a watcher that did not read",
            before.len()
        );
        let rounds: Vec<&str> = before
            .iter()
            .map(|e| e["object"]["data"]["round"].as_str().unwrap_or_default())
            .collect();
        let expected: Vec<String> = (0..before.len()).map(|r| r.to_string()).collect();
        ensure!(rounds == expected, "in order from the start: {rounds:?}");
        Ok(())
    })
}
