//! The runtime against the test plugins in plugins/tests (built by scripts/build-plugins.sh).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wasmkube_runtime::{
    ApiError, CallError, Compiler, ControllerInstance, EventType, Gvr, HostApi, Limits, LogLevel,
    ObjectKey, Outcome, PatchType, Propagation, Runtime, RuntimeError,
};

/// The workspace's target dir: `CARGO_TARGET_DIR` when set, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// The component of the test plugin crate `name`.
fn plugin(name: &str) -> Vec<u8> {
    let path = target_dir()
        .join("plugins/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the plugins first: scripts/build-plugins.sh",
            path.display()
        )
    })
}

/// A HostApi that answers from nothing and records every call; writes take `write_delay`
/// (recorded once done).
#[derive(Default)]
struct FakeHost {
    calls: Mutex<Vec<String>>,
    write_delay: Duration,
}

impl FakeHost {
    fn record(&self, call: String) {
        self.calls.lock().expect("calls lock").push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls lock").clone()
    }
}

fn gvr_text(gvr: &Gvr) -> String {
    format!("{}/{}/{}", gvr.group, gvr.version, gvr.resource)
}

fn forbidden(what: &str) -> ApiError {
    ApiError {
        code: 403,
        reason: "Forbidden".into(),
        message: format!("plugin may not {what}"),
    }
}

#[async_trait]
impl HostApi for FakeHost {
    async fn get(&self, resource: Gvr, key: ObjectKey) -> Result<Option<String>, ApiError> {
        self.record(format!(
            "get {} {}/{}",
            gvr_text(&resource),
            key.namespace,
            key.name
        ));
        // Yield like a real apiserver round trip would.
        tokio::task::yield_now().await;
        Ok((key.namespace == "default")
            .then(|| format!(r#"{{"metadata":{{"name":"{}"}}}}"#, key.name)))
    }

    async fn list(&self, resource: Gvr, ns: String, sel: String) -> Result<Vec<String>, ApiError> {
        self.record(format!("list {} {ns} {sel}", gvr_text(&resource)));
        Ok(vec![])
    }

    async fn create(&self, resource: Gvr, _obj: String) -> Result<String, ApiError> {
        tokio::time::sleep(self.write_delay).await;
        self.record(format!("create {}", gvr_text(&resource)));
        Err(forbidden(&format!("create {}", resource.resource)))
    }

    async fn update(&self, resource: Gvr, _obj: String) -> Result<String, ApiError> {
        self.record(format!("update {}", gvr_text(&resource)));
        Err(forbidden("update"))
    }

    async fn update_status(&self, resource: Gvr, _obj: String) -> Result<String, ApiError> {
        self.record(format!("update-status {}", gvr_text(&resource)));
        Err(forbidden("update status"))
    }

    async fn patch(
        &self,
        resource: Gvr,
        _key: ObjectKey,
        _kind: PatchType,
        _patch: String,
    ) -> Result<String, ApiError> {
        self.record(format!("patch {}", gvr_text(&resource)));
        Err(forbidden("patch"))
    }

    async fn delete(
        &self,
        resource: Gvr,
        _key: ObjectKey,
        _p: Propagation,
    ) -> Result<(), ApiError> {
        self.record(format!("delete {}", gvr_text(&resource)));
        Err(forbidden("delete"))
    }

    async fn emit_event(&self, _regarding: String, kind: EventType, reason: String, _msg: String) {
        self.record(format!("event {kind:?} {reason}"));
    }

    fn log(&self, level: LogLevel, message: String) {
        self.record(format!("log {level:?} {message}"));
    }

    fn now(&self) -> String {
        "2025-01-01T00:00:00.000000Z".into()
    }
}

fn key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn runtime() -> (Runtime, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(dir.path().join("cache")).expect("runtime");
    (runtime, dir)
}

async fn instance(
    runtime: &Runtime,
    name: &str,
    limits: Limits,
) -> (ControllerInstance, Arc<FakeHost>) {
    instance_with(runtime, name, limits, FakeHost::default()).await
}

async fn instance_with(
    runtime: &Runtime,
    name: &str,
    limits: Limits,
    host: FakeHost,
) -> (ControllerInstance, Arc<FakeHost>) {
    let module = runtime.load(&plugin(name)).expect("load");
    let host = Arc::new(host);
    let instance = ControllerInstance::new(&module, host.clone(), limits)
        .await
        .expect("instantiate");
    (instance, host)
}

#[tokio::test]
async fn echo_describes_reconciles_and_calls_the_host() {
    let (runtime, _dir) = runtime();
    let (mut echo, host) = instance(&runtime, "test_echo", Limits::default()).await;

    let registration = echo.describe().await.expect("describe");
    assert_eq!(registration.name, "echo");
    assert_eq!(gvr_text(&registration.primary), "/v1/configmaps");
    assert_eq!(registration.reads.len(), 1);

    let outcome = echo
        .reconcile(key("default", "web"))
        .await
        .expect("reconcile");
    assert!(matches!(outcome, Outcome::RequeueAfter(5)), "{outcome:?}");
    let outcome = echo
        .reconcile(key("other", "gone"))
        .await
        .expect("reconcile");
    assert!(matches!(outcome, Outcome::Done), "{outcome:?}");

    assert_eq!(
        host.calls(),
        [
            "log LogLevel::Info reconciling default/web",
            "get /v1/configmaps default/web",
            "log LogLevel::Info reconciling other/gone",
            "get /v1/configmaps other/gone",
        ]
    );
    let stats = echo.stats();
    assert_eq!((stats.calls, stats.errors, stats.traps), (3, 0, 0));
    assert_eq!(stats.latency_histogram.iter().sum::<u64>(), 3);
    assert!(stats.max_latency <= stats.total_latency);
    assert!(!echo.is_poisoned());
}

#[tokio::test]
async fn a_spinning_guest_hits_its_deadline_and_only_its_instance_dies() {
    let (runtime, _dir) = runtime();
    let limits = Limits {
        call_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (mut spin, _) = instance(&runtime, "test_loop", limits).await;
    spin.describe()
        .await
        .expect("describe works before the loop");

    let started = Instant::now();
    let result = spin.reconcile(key("default", "web")).await;
    let elapsed = started.elapsed();
    assert_eq!(result, Err(CallError::Deadline));
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    assert!(spin.is_poisoned());
    assert!(matches!(spin.describe().await, Err(CallError::Poisoned(_))));
    assert_eq!(spin.stats().traps, 1);

    // A new instance in the same runtime is unaffected.
    let (mut echo, _) = instance(&runtime, "test_echo", limits).await;
    let outcome = echo
        .reconcile(key("default", "web"))
        .await
        .expect("echo after the loop");
    assert!(matches!(outcome, Outcome::RequeueAfter(5)));
}

#[tokio::test]
async fn a_sleeping_guest_is_cut_off_at_its_wall_clock_deadline_and_counted() {
    let (runtime, _dir) = runtime();
    let limits = Limits {
        call_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (mut sleeper, _) = instance(&runtime, "test_sleep", limits).await;
    sleeper.describe().await.expect("describe does not sleep");

    // The guest sleeps for an hour in a WASI clock wait, where no epoch callback runs.
    let started = Instant::now();
    let result = sleeper.reconcile(key("default", "web")).await;
    let elapsed = started.elapsed();
    assert_eq!(result, Err(CallError::Deadline));
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(sleeper.is_poisoned());
    let stats = sleeper.stats();
    assert_eq!((stats.calls, stats.traps), (2, 1));
    assert!(stats.max_latency >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_guest_stuck_in_describe_is_cut_off_too() {
    let (runtime, _dir) = runtime();
    let limits = Limits {
        call_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (mut stuck, _) = instance(&runtime, "test_stuck", limits).await;
    let started = Instant::now();
    assert_eq!(stuck.describe().await, Err(CallError::Deadline));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_host_write_in_flight_at_the_deadline_completes_but_the_guest_never_sees_it() {
    let (runtime, _dir) = runtime();
    let limits = Limits {
        call_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let host = FakeHost {
        write_delay: Duration::from_millis(600),
        ..FakeHost::default()
    };
    let (mut plugin, host) = instance_with(&runtime, "test_forbidden", limits, host).await;
    let started = Instant::now();
    assert_eq!(
        plugin.reconcile(key("default", "web")).await,
        Err(CallError::Deadline)
    );
    assert!(started.elapsed() < Duration::from_millis(600));
    assert!(host.calls().is_empty(), "the write is still under way");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        host.calls(),
        ["create /v1/secrets"],
        "the write was not cut"
    );
}

#[tokio::test]
async fn guest_log_lines_are_escaped_and_bounded() {
    let (runtime, _dir) = runtime();
    let (mut echo, host) = instance(&runtime, "test_echo", Limits::default()).await;
    echo.reconcile(key("default", "web\x1b[2J\nFAKE log line"))
        .await
        .expect("reconcile");
    echo.reconcile(key("default", &"x".repeat(10_000)))
        .await
        .expect("reconcile");
    let calls = host.calls();
    assert_eq!(
        calls[0],
        "log LogLevel::Info reconciling default/web\\u{1b}[2J\\nFAKE log line"
    );
    let long = calls
        .iter()
        .find(|c| c.starts_with("log") && c.contains("xxx"))
        .expect("the long line");
    assert!(long.len() < 4200 && long.ends_with('…'), "{}", long.len());
}

#[tokio::test]
async fn a_guest_that_allocates_forever_hits_its_memory_limit() {
    let (runtime, _dir) = runtime();
    let limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let (mut bomb, _) = instance(&runtime, "test_membomb", limits).await;
    let result = bomb.reconcile(key("default", "web")).await;
    match &result {
        Err(CallError::Memory(reason)) => assert!(reason.contains("memory allocation"), "{reason}"),
        Err(CallError::Trap(reason)) if reason.contains("memory") => {}
        other => panic!("expected a memory error, got {other:?}"),
    }
    assert!(bomb.is_poisoned());
}

#[tokio::test]
async fn a_panic_is_a_trap_with_its_message() {
    let (runtime, _dir) = runtime();
    let (mut panicky, _) = instance(&runtime, "test_panic", Limits::default()).await;
    match panicky.reconcile(key("default", "web")).await {
        Err(CallError::Trap(reason)) => {
            assert!(
                reason.contains("reconcile exploded on default/web"),
                "{reason}"
            )
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(panicky.is_poisoned());
    assert!(matches!(
        panicky.reconcile(key("default", "web")).await,
        Err(CallError::Poisoned(_))
    ));
}

#[tokio::test]
async fn a_refused_host_call_comes_back_as_the_guests_error() {
    let (runtime, _dir) = runtime();
    let (mut plugin, host) = instance(&runtime, "test_forbidden", Limits::default()).await;
    match plugin.reconcile(key("default", "web")).await {
        Err(CallError::Failed(message)) => {
            assert!(message.contains("403 Forbidden"), "{message}");
            assert!(
                message.contains("plugin may not create secrets"),
                "{message}"
            );
        }
        other => panic!("expected the guest's error, got {other:?}"),
    }
    assert_eq!(host.calls(), ["create /v1/secrets"]);
    assert!(
        !plugin.is_poisoned(),
        "a guest error leaves the instance usable"
    );
    assert_eq!(plugin.stats().errors, 1);
    assert!(plugin.describe().await.is_ok());
}

#[tokio::test]
async fn compiled_plugins_are_cached_in_memory_and_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = plugin("test_echo");

    let first = Runtime::new(dir.path()).expect("runtime");
    let module = first.load(&bytes).expect("load");
    assert_eq!(module.digest().len(), 64);
    assert_eq!(first.compilations(), 1);
    let again = first.load(&bytes).expect("load again");
    assert!(Arc::ptr_eq(&module, &again));
    assert_eq!(first.compilations(), 1);
    let cached = dir.path().join(format!("{}.cwasm", module.digest()));
    assert!(cached.is_file(), "{} missing", cached.display());
    drop((first, module, again));

    // A restart finds the compiled code on disk.
    let second = Runtime::new(dir.path()).expect("runtime");
    let module = second.load(&bytes).expect("load from disk");
    assert_eq!(second.compilations(), 0);
    let host = Arc::new(FakeHost::default());
    let mut echo = ControllerInstance::new(&module, host, Limits::default())
        .await
        .expect("instance");
    assert!(echo.reconcile(key("default", "web")).await.is_ok());

    // A damaged cache file is compiled again, not trusted.
    drop((second, module, echo));
    std::fs::write(&cached, b"not an artifact").expect("damage the cache");
    let third = Runtime::new(dir.path()).expect("runtime");
    third.load(&bytes).expect("load past a damaged cache file");
    assert_eq!(third.compilations(), 1);
}

/// A child compiler that copies `artifact` into the cache directory it is given (its `$0`).
fn copying_compiler(script: &str) -> Compiler {
    Compiler::Child {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
    }
}

#[tokio::test]
async fn a_child_compiler_fills_the_cache_or_says_why_not() {
    let bytes = plugin("test_echo");
    let compiled = tempfile::tempdir().expect("tempdir");
    let digest = Runtime::new(compiled.path())
        .expect("runtime")
        .load(&bytes)
        .expect("compile in process")
        .digest()
        .to_string();
    let artifact = compiled.path().join(format!("{digest}.cwasm"));

    // The child reads the component and leaves its artifact in the cache: loaded from there.
    let dir = tempfile::tempdir().expect("tempdir");
    let script = format!(
        "test \"$(wc -c)\" -eq {} && cp {} \"$0\"/",
        bytes.len(),
        artifact.display()
    );
    let runtime = Runtime::new(dir.path())
        .expect("runtime")
        .with_compiler(copying_compiler(&script));
    let module = runtime.load(&bytes).expect("load through the child");
    assert_eq!(module.digest(), digest);
    assert_eq!(runtime.compilations(), 1);
    let host = Arc::new(FakeHost::default());
    let mut echo = ControllerInstance::new(&module, host, Limits::default())
        .await
        .expect("instance");
    assert!(echo.reconcile(key("default", "web")).await.is_ok());

    // A child that fails: its last line of stderr is the reason.
    let failing = Runtime::new(dir.path().join("failing"))
        .expect("runtime")
        .with_compiler(copying_compiler(
            "cat >/dev/null; echo 'Error: no good' >&2; exit 3",
        ));
    match failing.load(&bytes) {
        Err(RuntimeError::Invalid(reason)) => assert!(reason.contains("no good"), "{reason}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    // A child that exits 0 without an artifact.
    let idle = Runtime::new(dir.path().join("idle"))
        .expect("runtime")
        .with_compiler(copying_compiler("cat >/dev/null"));
    match idle.load(&bytes) {
        Err(RuntimeError::Invalid(reason)) => assert!(reason.contains("left no"), "{reason}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(failing.compilations() + idle.compilations(), 0);
}

#[tokio::test]
async fn invalid_bytes_are_refused_with_a_clear_error() {
    let (runtime, _dir) = runtime();
    let garbage: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    match runtime.load(&garbage) {
        Err(RuntimeError::Invalid(reason)) => assert!(!reason.is_empty()),
        other => panic!("expected Invalid, got {other:?}"),
    }
    // A core module is not a component.
    let core_module = b"\0asm\x01\0\0\0";
    let error = runtime
        .load(core_module)
        .expect_err("a core module is not a plugin");
    assert!(matches!(error, RuntimeError::Invalid(_)), "{error}");
    assert_eq!(runtime.compilations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtimes_are_shared_and_instances_move_between_tasks() {
    fn shared<T: Send + Sync>(_: &T) {}
    let (runtime, _dir) = runtime();
    shared(&runtime);
    let runtime = Arc::new(runtime);
    let tasks: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let runtime = Arc::clone(&runtime);
            tokio::spawn(async move {
                let (mut echo, host) = instance(&runtime, "test_echo", Limits::default()).await;
                echo.reconcile(key("default", name))
                    .await
                    .expect("reconcile");
                host.calls()
            })
        })
        .collect();
    for (task, name) in tasks.into_iter().zip(["a", "b"]) {
        let calls = task.await.expect("task");
        assert_eq!(calls[1], format!("get /v1/configmaps default/{name}"));
    }
    assert_eq!(runtime.compilations(), 1);
}
