use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::{Instant, advance};
use wasmkube_apiserver::error::ApiError;

use super::{Elector, Leases, State, Timing};

/// One lease in memory, shared by the electors of a test; `failing` makes every call fail as a
/// partitioned host's would.
#[derive(Clone, Default)]
struct Fake {
    lease: Arc<Mutex<Option<(Value, i64)>>>,
    failing: Arc<AtomicBool>,
}

impl Fake {
    fn check(&self) -> Result<(), ApiError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(ApiError::Internal("partitioned".into()));
        }
        Ok(())
    }

    fn holder(&self) -> String {
        let lease = self.lease.lock().unwrap();
        let (lease, _) = lease.as_ref().expect("a lease");
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn spec(&self) -> Value {
        self.lease.lock().unwrap().as_ref().unwrap().0["spec"].clone()
    }

    /// A partitioned host's view: its calls fail, the lease stays shared.
    fn partitioned(&self) -> Fake {
        Fake {
            lease: self.lease.clone(),
            failing: Arc::new(AtomicBool::new(false)),
        }
    }
}

#[async_trait]
impl Leases for Fake {
    async fn get(&self) -> Result<Option<(Value, i64)>, ApiError> {
        self.check()?;
        Ok(self.lease.lock().unwrap().clone())
    }

    async fn create(&self, lease: Value) -> Result<(), ApiError> {
        self.check()?;
        let mut current = self.lease.lock().unwrap();
        if current.is_some() {
            return Err(ApiError::AlreadyExists {
                resource: "leases".into(),
                name: "test".into(),
            });
        }
        *current = Some((lease, 1));
        Ok(())
    }

    async fn update(&self, lease: Value, revision: i64) -> Result<(), ApiError> {
        self.check()?;
        let mut current = self.lease.lock().unwrap();
        match current.as_ref() {
            Some((_, rv)) if *rv == revision => {
                *current = Some((lease, revision + 1));
                Ok(())
            }
            _ => Err(ApiError::Conflict {
                resource: "leases".into(),
                name: "test".into(),
                reason: "stale".into(),
            }),
        }
    }
}

fn elector(fake: &Fake, identity: &str) -> Elector<Fake> {
    Elector::new(fake.clone(), identity.into(), Timing::default())
}

#[tokio::test(start_paused = true)]
async fn the_first_host_creates_the_lease_and_leads_at_once() {
    let fake = Fake::default();
    let mut a = elector(&fake, "a");
    assert!(a.step().await);
    assert_eq!(fake.holder(), "a");
    let spec = fake.spec();
    assert_eq!(spec["leaseDurationSeconds"], 15);
    assert_eq!(spec["leaseTransitions"], 0);
    assert!(spec["acquireTime"].is_string() && spec["renewTime"].is_string());
}

#[tokio::test(start_paused = true)]
async fn a_leader_renews_and_a_follower_waits_while_the_lease_is_renewed() {
    let fake = Fake::default();
    let (mut a, mut b) = (elector(&fake, "a"), elector(&fake, "b"));
    assert!(a.step().await);
    let acquired = fake.spec()["acquireTime"].clone();
    for _ in 0..20 {
        assert!(!b.step().await, "b took a lease a renews");
        advance(Duration::from_secs(2)).await;
        let renew = fake.spec()["renewTime"].clone();
        assert!(a.step().await);
        assert_ne!(
            fake.spec()["renewTime"],
            renew,
            "a renewal writes renewTime"
        );
    }
    assert_eq!(fake.holder(), "a");
    assert_eq!(
        fake.spec()["acquireTime"],
        acquired,
        "a renewal keeps acquireTime"
    );
    assert_eq!(fake.spec()["leaseTransitions"], 0);
}

#[tokio::test(start_paused = true)]
async fn a_follower_takes_a_lease_only_once_it_expired() {
    let fake = Fake::default();
    let (mut a, mut b) = (elector(&fake, "a"), elector(&fake, "b"));
    assert!(a.step().await);
    // `a` dies: nothing renews. `b` first sees the lease now, and counts from then.
    assert!(!b.step().await);
    advance(Duration::from_secs(14)).await;
    assert!(!b.step().await, "the lease was taken before it expired");
    advance(Duration::from_secs(1)).await;
    assert!(b.step().await);
    assert_eq!(fake.holder(), "b");
    assert_eq!(fake.spec()["leaseTransitions"], 1);
    // `a` comes back: it finds `b` holding the lease and follows.
    assert!(!a.step().await);
    assert_eq!(a.state(), State::Follower);
}

/// A Lease anyone with write access edited: a duration past what the clock can add never ends
/// (no overflow), and the transitions stay an int32.
#[tokio::test(start_paused = true)]
async fn a_lease_with_numbers_out_of_range_is_read_without_overflow() {
    let fake = Fake::default();
    let (mut a, mut b) = (elector(&fake, "a"), elector(&fake, "b"));
    assert!(a.step().await);
    {
        let mut lease = fake.lease.lock().unwrap();
        let (lease, _) = lease.as_mut().unwrap();
        lease["spec"]["leaseDurationSeconds"] = serde_json::json!(u64::MAX);
        lease["spec"]["leaseTransitions"] = serde_json::json!(i64::MAX);
    }
    // `a`'s edit from elsewhere: `b` sees a held lease that never expires.
    assert!(!b.step().await);
    advance(Duration::from_secs(3600)).await;
    assert!(!b.step().await);
    // Given up, it is taken, and the count of transitions is capped.
    fake.lease.lock().unwrap().as_mut().unwrap().0["spec"]["holderIdentity"] =
        serde_json::json!("");
    assert!(b.step().await);
    assert_eq!(fake.spec()["leaseTransitions"], i64::from(i32::MAX));
}

#[tokio::test(start_paused = true)]
async fn the_sole_host_of_a_store_takes_the_lease_of_its_killed_predecessor_at_once() {
    let fake = Fake::default();
    let mut killed = elector(&fake, "a");
    assert!(killed.step().await);
    let mut b = elector(&fake, "b").sole();
    assert!(b.step().await);
    assert_eq!(fake.holder(), "b");
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_stops_before_another_may_take_the_lease() {
    let fake = Fake::default();
    let partitioned = fake.partitioned();
    let mut a = Elector::new(partitioned.clone(), "a".into(), Timing::default());
    let mut b = elector(&fake, "b");
    let start = Instant::now();
    assert!(a.step().await);
    assert!(!b.step().await);
    partitioned.failing.store(true, Ordering::SeqCst);
    // `a` keeps trying every retry period; `b` keeps looking.
    let (stopped, taken) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(None)));
    let (tx, mut rx) = watch::channel(true);
    let run = tokio::spawn(a.run(tx, std::future::pending()));
    let watcher = {
        let stopped = stopped.clone();
        tokio::spawn(async move {
            while *rx.borrow_and_update() {
                rx.changed().await.unwrap();
            }
            *stopped.lock().unwrap() = Some(Instant::now());
        })
    };
    while taken.lock().unwrap().is_none() {
        advance(Duration::from_millis(500)).await;
        // Lets `a`'s loop and the watcher run at this instant.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        if b.step().await {
            *taken.lock().unwrap() = Some(Instant::now());
        }
    }
    watcher.await.unwrap();
    let stopped = stopped.lock().unwrap().unwrap() - start;
    let taken = taken.lock().unwrap().unwrap() - start;
    assert!(stopped <= Duration::from_secs(10), "a led for {stopped:?}");
    assert!(
        taken >= Duration::from_secs(15),
        "b took the lease after {taken:?}"
    );
    run.abort();
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_store_hangs_stops_at_the_renew_deadline() {
    /// Answers reads at once but never finishes a write.
    struct Hanging(Fake);
    #[async_trait]
    impl Leases for Hanging {
        async fn get(&self) -> Result<Option<(Value, i64)>, ApiError> {
            self.0.get().await
        }
        async fn create(&self, lease: Value) -> Result<(), ApiError> {
            self.0.create(lease).await
        }
        async fn update(&self, _: Value, _: i64) -> Result<(), ApiError> {
            std::future::pending().await
        }
    }
    let mut a = Elector::new(Hanging(Fake::default()), "a".into(), Timing::default());
    let start = Instant::now();
    assert!(a.step().await);
    advance(Duration::from_secs(2)).await;
    assert!(!a.step().await, "a hung renewal ends at the renew deadline");
    assert_eq!(Instant::now() - start, Duration::from_secs(10));
}

/// A follower's read answered late (held up by a partition that healed): the lease's age counts
/// from the answer, not from when the read was sent, so a lease renewed meanwhile is not taken
/// early.
#[tokio::test(start_paused = true)]
async fn a_read_answered_late_does_not_age_the_lease() {
    /// Holds the first read for 9 s.
    struct Late(Fake, AtomicBool);
    #[async_trait]
    impl Leases for Late {
        async fn get(&self) -> Result<Option<(Value, i64)>, ApiError> {
            let lease = self.0.get().await;
            if !self.1.swap(true, Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(9)).await;
            }
            lease
        }
        async fn create(&self, lease: Value) -> Result<(), ApiError> {
            self.0.create(lease).await
        }
        async fn update(&self, lease: Value, revision: i64) -> Result<(), ApiError> {
            self.0.update(lease, revision).await
        }
    }
    let fake = Fake::default();
    let mut a = elector(&fake, "a");
    assert!(a.step().await);
    let mut b = Elector::new(
        Late(fake.clone(), AtomicBool::new(false)),
        "b".into(),
        Timing::default(),
    );
    assert!(!b.step().await);
    // 16 s after the read was sent, 7 s after its answer: not expired yet (15 s).
    advance(Duration::from_secs(7)).await;
    assert!(
        !b.step().await,
        "the lease aged by the time its read was held"
    );
    advance(Duration::from_secs(8)).await;
    assert!(b.step().await);
    assert_eq!(fake.holder(), "b");
}

/// A follower whose read never ends gives up after the renew deadline and tries again.
#[tokio::test(start_paused = true)]
async fn a_followers_hung_read_is_abandoned() {
    struct Stuck;
    #[async_trait]
    impl Leases for Stuck {
        async fn get(&self) -> Result<Option<(Value, i64)>, ApiError> {
            std::future::pending().await
        }
        async fn create(&self, _: Value) -> Result<(), ApiError> {
            std::future::pending().await
        }
        async fn update(&self, _: Value, _: i64) -> Result<(), ApiError> {
            std::future::pending().await
        }
    }
    let mut b = Elector::new(Stuck, "b".into(), Timing::default());
    let start = Instant::now();
    assert!(!b.step().await);
    assert_eq!(Instant::now() - start, Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_clean_shutdown_releases_the_lease_and_another_takes_it_at_once() {
    let fake = Fake::default();
    let a = elector(&fake, "a");
    let (tx, mut rx) = watch::channel(false);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(a.run(tx, async {
        let _ = stopped.await;
    }));
    rx.wait_for(|leading| *leading).await.unwrap();
    assert_eq!(fake.holder(), "a");
    stop.send(()).unwrap();
    run.await.unwrap();
    assert!(!*rx.borrow());
    assert_eq!(fake.holder(), "", "the holder is emptied");
    let mut b = elector(&fake, "b");
    assert!(b.step().await, "a released lease is free at once");
    assert_eq!(fake.spec()["leaseTransitions"], 1);
}

#[test]
fn the_timing_must_let_a_leader_stop_before_its_lease_ends() {
    assert!(Timing::default().check().is_ok());
    let late = Timing {
        renew_deadline: Duration::from_secs(15),
        ..Timing::default()
    };
    assert!(late.check().is_err());
    let slow = Timing {
        retry_period: Duration::from_secs(10),
        ..Timing::default()
    };
    assert!(slow.check().is_err());
}
