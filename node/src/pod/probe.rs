//! Container probes: startup, liveness and readiness, by exec, httpGet or tcpSocket, with
//! every timing field, each running container probed by a task of its own.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::event::{Recorder, Subject};
use crate::runtime::Runtime;

/// What the probes tell the pod worker about container `id`.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// The readiness probe's result changed.
    Ready(String, bool),
    /// The startup probe succeeded: liveness and readiness probing begins.
    Started(String),
    /// A liveness or startup probe (named) failed too often: restart the container.
    Unhealthy(String, &'static str),
}

/// The result of one probe: success, or why not.
pub type Outcome = Result<(), String>;

/// Where a probe connects and what it runs.
pub struct Target {
    pub id: String,
    pub pod_ip: String,
    pub container: Container,
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
}

/// A container port by number or by name.
fn port(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// What a probe or a lifecycle hook does: one of these actions.
pub struct Action<'a> {
    pub exec: Option<&'a ExecAction>,
    pub http_get: Option<&'a HTTPGetAction>,
    pub tcp_socket: Option<&'a TCPSocketAction>,
}

/// Runs one probe once.
async fn probe_once(runtime: &Arc<dyn Runtime>, target: &Target, probe: &Probe) -> Outcome {
    let action = Action {
        exec: probe.exec.as_ref(),
        http_get: probe.http_get.as_ref(),
        tcp_socket: probe.tcp_socket.as_ref(),
    };
    act(runtime, target, &action, seconds(probe.timeout_seconds, 1)).await
}

/// Does `action` against the container once, within `timeout`.
pub async fn act(
    runtime: &Arc<dyn Runtime>,
    target: &Target,
    action: &Action<'_>,
    timeout: Duration,
) -> Outcome {
    if let Some(exec) = action.exec {
        let args = exec.command.clone().unwrap_or_default();
        // As the container's own process: its user, environment and no new privileges.
        let run = runtime.exec(&target.id, &args);
        return match tokio::time::timeout(timeout, run).await {
            Ok(Ok((0, _))) => Ok(()),
            // The kubelet reports the command's output; we say the code when there is none.
            Ok(Ok((code, output))) if output.trim().is_empty() => {
                Err(format!("command {args:?} exited with {code}"))
            }
            Ok(Ok((_, output))) => Err(output.trim().to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "command {args:?} timed out after {}s",
                timeout.as_secs()
            )),
        };
    }
    if let Some(http) = action.http_get {
        let port = port(&target.container, &http.port).ok_or("invalid port")?;
        let host = http.host.clone().unwrap_or_else(|| target.pod_ip.clone());
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let headers: String = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| format!("{}: {}\r\n", h.name, h.value))
            .collect();
        // CR/LF in any of them would write headers or requests of the pod spec's choosing.
        let texts = http
            .http_headers
            .iter()
            .flatten()
            .flat_map(|h| [h.name.as_str(), h.value.as_str()]);
        if [path.as_str(), host.as_str()]
            .into_iter()
            .chain(texts)
            .any(|text| text.chars().any(char::is_control))
        {
            return Err(
                "invalid HTTP probe: control characters in its path, host or headers".into(),
            );
        }
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n{headers}\r\n"
        );
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut head = vec![0u8; 64];
            let n = stream.read(&mut head).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).into_owned())
        };
        return match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(head)) => {
                let code: u16 = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("HTTP probe failed with statuscode: {code}"))
                }
            }
            Ok(Err(e)) => Err(format!("Get \"http://{host}:{port}{path}\": {e}")),
            Err(_) => Err(format!(
                "Get \"http://{host}:{port}{path}\": context deadline exceeded"
            )),
        };
    }
    if let Some(tcp) = action.tcp_socket {
        let port = port(&target.container, &tcp.port).ok_or("invalid port")?;
        let host = tcp.host.clone().unwrap_or_else(|| target.pod_ip.clone());
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    Ok(())
}

/// Where failed probes are recorded: an `Unhealthy` Event for each, as the kubelet's prober.
pub struct Events {
    pub recorder: Recorder,
    pub subject: Subject,
}

impl Events {
    /// Records the outcome of a `kind` probe (`Liveness`, …) if it failed; whether it succeeded.
    fn judge(&self, kind: &str, outcome: &Outcome) -> bool {
        if let Err(why) = outcome {
            let message = format!("{kind} probe failed: {why}");
            self.recorder.warning(&self.subject, "Unhealthy", &message);
        }
        outcome.is_ok()
    }
}

/// Counts consecutive results against a probe's thresholds.
#[derive(Debug, Default)]
pub struct Tally {
    successes: i32,
    failures: i32,
}

impl Tally {
    /// Records a result; returns the new verdict when a threshold is crossed.
    pub fn record(&mut self, probe: &Probe, ok: bool) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes += 1;
            (self.successes == probe.success_threshold.unwrap_or(1).max(1)).then_some(true)
        } else {
            self.successes = 0;
            self.failures += 1;
            (self.failures == probe.failure_threshold.unwrap_or(3).max(1)).then_some(false)
        }
    }
}

/// Probes the container until it is gone or found unhealthy, reporting verdicts.
pub async fn run(
    runtime: Arc<dyn Runtime>,
    target: Target,
    verdicts: mpsc::Sender<Verdict>,
    events: Events,
) {
    let c = target.container.clone();
    let id = target.id.clone();
    if let Some(startup) = &c.startup_probe {
        tokio::time::sleep(seconds(startup.initial_delay_seconds, 0)).await;
        let mut tally = Tally::default();
        loop {
            let outcome = probe_once(&runtime, &target, startup).await;
            match tally.record(startup, events.judge("Startup", &outcome)) {
                Some(true) => break,
                Some(false) => {
                    let _ = verdicts.send(Verdict::Unhealthy(id, "startup")).await;
                    return;
                }
                None => {}
            }
            tokio::time::sleep(seconds(startup.period_seconds, 10)).await;
        }
    }
    if verdicts.send(Verdict::Started(id.clone())).await.is_err() {
        return;
    }
    let mut liveness = c.liveness_probe.as_ref().map(|p| {
        (
            p,
            Tally::default(),
            tokio::time::Instant::now() + seconds(p.initial_delay_seconds, 0),
        )
    });
    let mut readiness = c.readiness_probe.as_ref().map(|p| {
        (
            p,
            Tally::default(),
            tokio::time::Instant::now() + seconds(p.initial_delay_seconds, 0),
        )
    });
    let mut ready: Option<bool> = None;
    loop {
        let next = [
            liveness.as_ref().map(|l| l.2),
            readiness.as_ref().map(|r| r.2),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { return };
        tokio::time::sleep_until(next).await;
        let now = tokio::time::Instant::now();
        if let Some((probe, tally, due)) = liveness.as_mut()
            && *due <= now
        {
            let outcome = probe_once(&runtime, &target, probe).await;
            *due = tokio::time::Instant::now() + seconds(probe.period_seconds, 10);
            if tally.record(probe, events.judge("Liveness", &outcome)) == Some(false) {
                let _ = verdicts.send(Verdict::Unhealthy(id, "liveness")).await;
                return;
            }
        }
        if let Some((probe, tally, due)) = readiness.as_mut()
            && *due <= now
        {
            let outcome = probe_once(&runtime, &target, probe).await;
            *due = tokio::time::Instant::now() + seconds(probe.period_seconds, 10);
            if let Some(verdict) = tally.record(probe, events.judge("Readiness", &outcome))
                && ready != Some(verdict)
            {
                ready = Some(verdict);
                if verdicts
                    .send(Verdict::Ready(id.clone(), verdict))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        if verdicts.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_count_consecutive_results() {
        let probe = Probe {
            failure_threshold: Some(2),
            success_threshold: Some(2),
            ..Probe::default()
        };
        let mut tally = Tally::default();
        assert_eq!(tally.record(&probe, false), None);
        assert_eq!(tally.record(&probe, true), None);
        assert_eq!(tally.record(&probe, true), Some(true));
        assert_eq!(tally.record(&probe, false), None);
        assert_eq!(tally.record(&probe, false), Some(false));
    }
}
