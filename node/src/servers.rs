//! Which apiserver a node agent talks to: it sticks to one that answers; one that fails (no
//! connection, a timeout, a 5xx) rests, 1 s doubling up to 30 s, while the others are tried.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long a server that just failed is left alone.
const FIRST_REST: Duration = Duration::from_secs(1);
/// The longest a server that keeps failing is left alone.
const LONGEST_REST: Duration = Duration::from_secs(30);

/// The apiservers of one connection (never empty), shared by every clone of an `Api`.
#[derive(Debug)]
pub struct Servers {
    urls: Vec<String>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The index of the server requests go to first.
    current: usize,
    /// Per server: how many times it failed in a row, and until when it rests.
    health: Vec<(u32, Option<Instant>)>,
}

impl Servers {
    /// `urls`, the first one current; an empty list is none at all (`urls` never is).
    pub fn new(urls: Vec<String>) -> Servers {
        let health = vec![(0, None); urls.len()];
        Servers {
            urls,
            state: Mutex::new(State { current: 0, health }),
        }
    }

    /// The URL of server `index`.
    pub fn url(&self, index: usize) -> &str {
        &self.urls[index]
    }

    /// The servers to try for one request, in order: the current one and then the others
    /// after it, leaving out those resting; if every one rests, the one whose rest ends first.
    pub fn order(&self) -> Vec<usize> {
        self.order_at(Instant::now())
    }

    fn order_at(&self, now: Instant) -> Vec<usize> {
        let state = self.lock();
        let n = self.urls.len();
        let awake: Vec<usize> = (0..n)
            .map(|i| (state.current + i) % n)
            .filter(|&i| state.health[i].1.is_none_or(|until| until <= now))
            .collect();
        if !awake.is_empty() {
            return awake;
        }
        let soonest = (0..n).min_by_key(|&i| state.health[i].1).unwrap_or(0);
        vec![soonest]
    }

    /// Server `index` failed: it rests, and if it was current the next one becomes current.
    pub fn failed(&self, index: usize) {
        self.failed_at(index, Instant::now());
    }

    fn failed_at(&self, index: usize, now: Instant) {
        let mut state = self.lock();
        let (failures, until) = &mut state.health[index];
        *failures = failures.saturating_add(1);
        let rest = FIRST_REST
            .saturating_mul(1 << (*failures - 1).min(5))
            .min(LONGEST_REST);
        *until = Some(now + rest);
        if state.current == index && self.urls.len() > 1 {
            state.current = (index + 1) % self.urls.len();
            tracing::warn!(
                failed = %self.urls[index],
                next = %self.urls[state.current],
                rest_ms = rest.as_millis() as u64,
                "an apiserver failed; failing over"
            );
        }
    }

    /// Server `index` answered: it is well again, and current from now on.
    pub fn answered(&self, index: usize) {
        let mut state = self.lock();
        state.health[index] = (0, None);
        if state.current != index {
            state.current = index;
            tracing::info!(server = %self.urls[index], "talking to this apiserver from now on");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Servers {
        Servers::new(vec!["a".into(), "b".into(), "c".into()])
    }

    #[test]
    fn a_failed_server_rests_and_the_next_is_current() {
        let servers = three();
        let now = Instant::now();
        assert_eq!(servers.order_at(now), [0, 1, 2]);
        servers.failed_at(0, now);
        assert_eq!(servers.order_at(now), [1, 2]);
        // Sticks to the one that answers, even once the failed one has rested.
        servers.answered(1);
        assert_eq!(
            servers.order_at(now + Duration::from_millis(1001)),
            [1, 2, 0]
        );
    }

    #[test]
    fn rests_double_up_to_thirty_seconds() {
        let servers = three();
        let now = Instant::now();
        let mut rests = Vec::new();
        for _ in 0..8 {
            servers.failed_at(2, now);
            let until = servers.lock().health[2].1.expect("resting");
            rests.push((until - now).as_secs());
        }
        assert_eq!(rests, [1, 2, 4, 8, 16, 30, 30, 30]);
        servers.answered(2);
        assert_eq!(servers.lock().health[2], (0, None));
    }

    #[test]
    fn when_all_rest_the_soonest_awake_is_tried() {
        let servers = three();
        let now = Instant::now();
        for index in [1, 1, 0, 2, 2, 2] {
            servers.failed_at(index, now);
        }
        assert_eq!(servers.order_at(now), [0]);
        assert_eq!(servers.order_at(now + Duration::from_millis(2001)), [1, 0]);
    }
}
