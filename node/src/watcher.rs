//! List-then-watch of one API path, as kube-rs's watcher: a list, then a watch from its
//! resourceVersion; a watch that ends or breaks is opened again from the last version seen (on
//! whichever apiserver answers), and only a version too old to watch from (410 Gone) is listed
//! again.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::api::{Api, Event, Watch};

/// How long to wait before trying again after the API failed.
const RETRY: Duration = Duration::from_secs(1);

/// What the watched collection did.
#[derive(Debug)]
pub enum Change {
    /// A fresh list: every object there is now.
    Listed(Vec<Value>),
    /// `ADDED`, `MODIFIED` or `DELETED`, and the object.
    Event(Event),
}

/// The list and watch of one path, kept going for as long as [`Watcher::next`] is called.
pub struct Watcher {
    api: Api,
    path: String,
    /// The version to watch from; `None` to list first.
    version: Option<String>,
    watch: Option<Watch>,
}

impl Watcher {
    /// A watcher of `path` (a collection, with its own query if any), which lists first.
    pub fn new(api: Api, path: impl Into<String>) -> Watcher {
        Watcher {
            api,
            path: path.into(),
            version: None,
            watch: None,
        }
    }

    /// The next change; failures are logged and retried. Cancel-safe: dropped while waiting,
    /// the next call carries on from the same version.
    pub async fn next(&mut self) -> Change {
        loop {
            let Some(version) = self.version.clone() else {
                match self.api.list(&self.path).await {
                    Ok((items, version)) => {
                        self.version = Some(version);
                        return Change::Listed(items);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, path = %self.path, "listing");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                }
            };
            let watch = match &mut self.watch {
                Some(watch) => watch,
                None => match self.api.watch(&self.path, &version).await {
                    Ok(watch) => self.watch.insert(watch),
                    Err(e) if e.status() == Some(StatusCode::GONE) => {
                        self.version = None;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, path = %self.path, "watching");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                },
            };
            let event = match watch.next().await {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, path = %self.path, %version, "the watch broke; watching again from its last version");
                    self.watch = None;
                    continue;
                }
                None => {
                    self.watch = None;
                    continue;
                }
            };
            let seen = event
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty());
            match event.kind.as_str() {
                "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" => {
                    if let Some(seen) = seen {
                        self.version = Some(seen.to_string());
                    }
                    if event.kind != "BOOKMARK" {
                        return Change::Event(event);
                    }
                }
                "ERROR" => {
                    self.watch = None;
                    if event.object["code"] == StatusCode::GONE.as_u16() {
                        self.version = None;
                    } else {
                        tracing::warn!(error = %event.object, path = %self.path, "the watch ended with an error");
                        tokio::time::sleep(RETRY).await;
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Query, State};
    use axum::routing::get;
    use serde_json::json;

    use super::*;
    use crate::api::{Connection, Credential};

    /// The watches asked for (their resourceVersion) and what each answers.
    #[derive(Clone, Default)]
    struct Fake {
        asked: Arc<Mutex<Vec<String>>>,
    }

    /// A list at version 5 with one pod; a watch from 5 gives one event then breaks; from 7
    /// (the event's version) a 410; a list again gives version 9, whose watch stays open.
    async fn pods(
        State(fake): State<Fake>,
        Query(query): Query<std::collections::HashMap<String, String>>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let Some(version) = query.get("resourceVersion") else {
            let lists = fake
                .asked
                .lock()
                .expect("lock")
                .iter()
                .filter(|a| *a == "list")
                .count();
            fake.asked.lock().expect("lock").push("list".into());
            let version = if lists == 0 { "5" } else { "9" };
            return axum::Json(json!({"metadata": {"resourceVersion": version},
                "items": [{"metadata": {"name": "p", "resourceVersion": version}}]}))
            .into_response();
        };
        fake.asked.lock().expect("lock").push(version.clone());
        match version.as_str() {
            "5" => {
                let events = [
                    json!({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "6"}}}),
                    json!({"type": "MODIFIED", "object": {"metadata": {"name": "p", "resourceVersion": "7"}}}),
                ];
                let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
                lines.into_response()
            }
            "7" => (StatusCode::GONE, "too old").into_response(),
            _ => {
                let event = json!({"type": "ADDED", "object": {"metadata": {"name": "q", "resourceVersion": "10"}}});
                format!("{event}\n").into_response()
            }
        }
    }

    #[tokio::test]
    async fn a_broken_watch_resumes_from_its_last_version_and_a_gone_one_relists() {
        let fake = Fake::default();
        let app = axum::Router::new()
            .route("/api/v1/pods", get(pods))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test setup");
        let address = listener.local_addr().expect("test setup");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let connection = Connection::to(&format!("http://{address}"), Credential::Anonymous, None)
            .expect("test setup");
        let mut watcher = Watcher::new(Api::new(&connection).expect("test setup"), "/api/v1/pods");
        let names = |change: Change| match change {
            Change::Listed(items) => format!("listed {}", items[0]["metadata"]["resourceVersion"]),
            Change::Event(e) => format!("{} {}", e.kind, e.object["metadata"]["name"]),
        };
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(names(watcher.next().await));
        }
        assert_eq!(
            seen,
            [
                r#"listed "5""#,
                r#"MODIFIED "p""#,
                r#"listed "9""#,
                r#"ADDED "q""#
            ]
        );
        assert_eq!(
            *fake.asked.lock().expect("lock"),
            ["list", "5", "7", "list", "9"]
        );
    }
}
