//! How a plugin component becomes a compiled artifact in the cache: in this process, or in a
//! short-lived child process so that cranelift's heap and code never enter a long-running server.

use std::ffi::OsString;
use std::io::{Read, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wasmtime::Engine;

use crate::RuntimeError;

/// Where [`Runtime`](crate::Runtime) compiles what its cache lacks.
#[derive(Debug, Clone, Default)]
pub enum Compiler {
    /// `Engine::precompile_component` on the calling thread.
    #[default]
    InProcess,
    /// A command run with the cache directory as its last argument and the component's bytes on
    /// stdin, that leaves `<sha256>.cwasm` in that directory and exits 0: the same executable's
    /// `wasmkube plugin compile` (which compiles with [`Runtime::load`](crate::Runtime::load)).
    Child {
        program: PathBuf,
        args: Vec<OsString>,
    },
}

impl Compiler {
    /// Compiles `bytes` into `path` (`cache_dir/<digest>.cwasm`), written whole or not at all.
    pub(crate) fn compile(
        &self,
        engine: &Engine,
        cache_dir: &Path,
        path: &Path,
        bytes: &[u8],
    ) -> Result<(), RuntimeError> {
        match self {
            Compiler::InProcess => {
                let artifact = engine
                    .precompile_component(bytes)
                    .map_err(|e| RuntimeError::Invalid(format!("{e:#}")))?;
                write_artifact(cache_dir, path, &artifact)
            }
            Compiler::Child { program, args } => {
                run_child(program, args, cache_dir, bytes)?;
                if path.is_file() {
                    Ok(())
                } else {
                    Err(RuntimeError::Invalid(format!(
                        "the compiler {} left no {}",
                        program.display(),
                        path.display()
                    )))
                }
            }
        }
    }
}

/// How much of the child's stderr is kept: its last line is the reason it failed.
const STDERR_BYTES: usize = 64 * 1024;

/// Runs the child compiler to its end, the component written to its stdin; a failure carries
/// the last line of its stderr (`Error: …`).
fn run_child(
    program: &Path,
    args: &[OsString],
    cache_dir: &Path,
    bytes: &[u8],
) -> Result<(), RuntimeError> {
    let failed = |reason: String| {
        RuntimeError::Invalid(format!("compiling in {}: {reason}", program.display()))
    };
    let mut child = Command::new(program)
        .args(args)
        .arg(cache_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("not started: {e}")))?;
    let (stdin, stderr) = (child.stdin.take(), child.stderr.take());
    let (written, log) = std::thread::scope(|scope| {
        // Written beside the read of stderr, so that neither pipe can fill and stall the other.
        let writer = scope.spawn(move || stdin.map_or(Ok(()), |mut stdin| stdin.write_all(bytes)));
        let log = stderr.map(tail).unwrap_or_default();
        let written = writer.join().unwrap_or(Ok(()));
        (written, log)
    });
    // Waited for whatever happened to the pipes, so that no child is left behind.
    let status = child
        .wait()
        .map_err(|e| failed(format!("not waited for: {e}")))?;
    if !status.success() {
        let log = String::from_utf8_lossy(&log);
        let reason = log
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(failed(format!("{status}: {reason}")));
    }
    written.map_err(|e| failed(format!("writing the component: {e}")))
}

/// Reads `stderr` to its end (the child never blocks on a full pipe), keeping its last
/// [`STDERR_BYTES`] or a little more.
fn tail(mut stderr: impl Read) -> Vec<u8> {
    let mut log = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = stderr.read(&mut buf) {
        log.extend_from_slice(&buf[..n]);
        if log.len() > 2 * STDERR_BYTES {
            log.drain(..log.len() - STDERR_BYTES);
        }
    }
    log
}

/// Writes an artifact by a private temporary file renamed into place, so that a reader never
/// sees half of one.
fn write_artifact(cache_dir: &Path, path: &Path, artifact: &[u8]) -> Result<(), RuntimeError> {
    let cache_err = |source| RuntimeError::Cache {
        path: path.to_path_buf(),
        source,
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = cache_dir.join(format!("{name}.{}.tmp", std::process::id()));
    let write = |tmp: &Path| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(tmp)?;
        file.write_all(artifact)?;
        file.sync_all()
    };
    write(&tmp).map_err(cache_err)?;
    std::fs::rename(&tmp, path).map_err(cache_err)
}
