//! One container of a pod as its worker tracks it: a state machine stepped by what happens to
//! its process, with the kubelet's crash-loop back-off.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::runtime::Exit;

/// The first back-off after a crash; it doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long before it ended starts its back-off afresh.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// When to restart a container that ended, from the pod's `restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(text: Option<&str>) -> RestartPolicy {
        match text {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }
}

/// A run of the container that ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub id: String,
    pub started: DateTime<Utc>,
    pub exit: Exit,
}

impl Ended {
    /// `OOMKilled`, `Completed` or `Error`, as the kubelet reports.
    pub fn reason(&self) -> &'static str {
        if self.exit.oom_killed {
            "OOMKilled"
        } else if self.exit.code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

/// Where a container is.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Not running: never started yet, backing off, or unable to start (`reason`).
    Waiting {
        reason: String,
        message: Option<String>,
        /// The earliest time to (re)start it.
        until: Option<tokio::time::Instant>,
    },
    Running {
        id: String,
        started: DateTime<Utc>,
    },
    /// Ended and will not be restarted.
    Terminated(Ended),
}

/// One container of the pod.
#[derive(Clone, Debug)]
pub struct Slot {
    pub name: String,
    pub init: bool,
    pub image: String,
    pub restarts: u32,
    pub state: State,
    /// The previous run (`lastState`).
    pub last: Option<Ended>,
    pub backoff: Duration,
    /// The readiness probe's verdict (true when it has none, once running).
    pub ready: bool,
}

impl Slot {
    pub fn new(name: &str, image: &str, init: bool) -> Slot {
        Slot {
            name: name.to_string(),
            init,
            image: image.to_string(),
            restarts: 0,
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
                until: None,
            },
            last: None,
            backoff: Duration::ZERO,
            ready: false,
        }
    }

    /// The id of its running container.
    pub fn running(&self) -> Option<&str> {
        match &self.state {
            State::Running { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Whether it ended with 0 and stays ended (an init container that is done).
    pub fn succeeded(&self) -> bool {
        matches!(&self.state, State::Terminated(e) if e.exit.code == 0)
    }

    /// Whether it may be started now.
    pub fn startable(&self, now: tokio::time::Instant) -> bool {
        matches!(&self.state, State::Waiting { until, .. } if until.is_none_or(|u| u <= now))
    }

    /// It started as container `id`.
    pub fn started(&mut self, id: String, at: DateTime<Utc>) {
        self.state = State::Running { id, started: at };
    }

    /// It could not start: waits with `reason`, retrying after the back-off.
    pub fn failed_to_start(&mut self, reason: &str, message: String, now: tokio::time::Instant) {
        self.backoff = next_backoff(self.backoff, Duration::ZERO);
        self.wait(reason, message, now + self.backoff);
    }

    /// It waits for something besides itself (a ConfigMap, a Secret) with `reason` until
    /// `until`; its crash-loop back-off is left as it is.
    pub fn wait(&mut self, reason: &str, message: String, until: tokio::time::Instant) {
        self.state = State::Waiting {
            reason: reason.to_string(),
            message: Some(message),
            until: Some(until),
        };
    }

    /// Its process ended: terminated for good, or waiting out the back-off to restart.
    pub fn ended(
        &mut self,
        exit: Exit,
        policy: RestartPolicy,
        pod: &str,
        now: tokio::time::Instant,
    ) {
        let State::Running { id, started } = &self.state else {
            return;
        };
        let ended = Ended {
            id: id.clone(),
            started: *started,
            exit,
        };
        let failed = ended.exit.code != 0;
        let restart = match policy {
            RestartPolicy::Always => !self.init || failed,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Never => false,
        };
        if !restart {
            self.state = State::Terminated(ended);
            return;
        }
        let ran = (ended.exit.at - ended.started).to_std().unwrap_or_default();
        self.backoff = next_backoff(self.backoff, ran);
        self.restarts += 1;
        self.state = State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!(
                "back-off {}s restarting failed container={} pod={pod}",
                self.backoff.as_secs(),
                self.name
            )),
            until: Some(now + self.backoff),
        };
        self.last = Some(ended);
    }
}

/// The back-off after a run of `ran`: 10 s, doubling to 5 min, afresh after 10 min of running.
pub fn next_backoff(current: Duration, ran: Duration) -> Duration {
    if current.is_zero() || ran >= BACKOFF_RESET {
        INITIAL_BACKOFF
    } else {
        (current * 2).min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32) -> Exit {
        Exit {
            code,
            at: Utc::now(),
            oom_killed: false,
        }
    }

    #[test]
    fn back_off_doubles_to_five_minutes_and_resets_after_ten_minutes_running() {
        let mut b = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..7 {
            b = next_backoff(b, Duration::from_secs(1));
            seen.push(b.as_secs());
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(next_backoff(b, Duration::from_secs(601)), INITIAL_BACKOFF);
    }

    #[test]
    fn restart_policy_decides_between_back_off_and_terminated() {
        let now = tokio::time::Instant::now();
        let mut slot = Slot::new("app", "busybox", false);
        slot.started("c1".into(), Utc::now());
        slot.ended(exit(0), RestartPolicy::OnFailure, "p_default(u)", now);
        assert!(slot.succeeded());

        let mut slot = Slot::new("app", "busybox", false);
        slot.started("c1".into(), Utc::now());
        slot.ended(exit(3), RestartPolicy::Always, "p_default(u)", now);
        assert_eq!(slot.restarts, 1);
        assert!(
            matches!(&slot.state, State::Waiting { reason, .. } if reason == "CrashLoopBackOff")
        );
        assert!(!slot.startable(now));
        assert!(slot.startable(now + INITIAL_BACKOFF));
        assert_eq!(slot.last.as_ref().map(|e| e.reason()), Some("Error"));

        let mut init = Slot::new("setup", "busybox", true);
        init.started("c2".into(), Utc::now());
        init.ended(exit(0), RestartPolicy::Always, "p_default(u)", now);
        assert!(
            init.succeeded(),
            "a finished init container is not restarted"
        );
    }
}
