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

#[test]
fn the_registry_does_not_use_the_http_layer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/registry");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("src/registry is readable") {
        let path = entry.expect("a directory entry").path();
        let text = std::fs::read_to_string(&path).expect("a source file");
        for name in HTTP {
            assert!(!text.contains(name), "{} uses {name}", path.display());
        }
        checked += 1;
    }
    assert!(checked > 0, "no sources in {}", dir.display());
}
