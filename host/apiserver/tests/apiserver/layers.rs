//! The layers of the apiserver, checked on its sources: the registry (the write path) knows nothing of HTTP.

use std::path::Path;

/// What the registry may not name: the HTTP layer of this crate and the crates it is built on.
const HTTP: [&str; 6] = [
    "crate::handlers",
    "crate::request",
    "crate::response",
    "axum::",
    "http::",
    "hyper",
];

/// The `.rs` files under `dir`, subdirectories (`registry/podsecurity/`) included.
fn sources(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the directory is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_registry_does_not_use_the_http_layer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/registry");
    let files = sources(&dir);
    for path in &files {
        let text = std::fs::read_to_string(path).expect("a source file");
        for name in HTTP {
            assert!(!text.contains(name), "{} uses {name}", path.display());
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("podsecurity/mod.rs")),
        "subdirectories are read"
    );
}
