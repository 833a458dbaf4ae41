//! Image references in their full form, as Kubernetes and containerd write them.

/// `reference` fully qualified the way Docker, containerd and the kubelet normalise it:
/// `busybox` → `docker.io/library/busybox:latest`, `foo/bar:1` → `docker.io/foo/bar:1`,
/// `example.com:5000/x` → `example.com:5000/x:latest`. A digest is kept (`name@sha256:…`) and
/// a tag next to a digest dropped, as containerd's `ParseDockerRef` does. References are not
/// validated: a malformed one comes back qualified but still malformed.
pub fn normalize(reference: &str) -> String {
    let reference = reference.trim();
    let (named, digest) = match reference.split_once('@') {
        Some((named, digest)) if !digest.is_empty() => (named, Some(digest)),
        Some((named, _)) => (named, None),
        None => (reference, None),
    };
    // A tag is what follows the last ':' after the last '/' (a ':' before it is a port).
    let last_component = named.rfind('/').map_or(0, |slash| slash + 1);
    let (name, tag) = match named[last_component..].rfind(':') {
        Some(colon) => {
            let colon = last_component + colon;
            (
                &named[..colon],
                Some(&named[colon + 1..]).filter(|t| !t.is_empty()),
            )
        }
        None => (named, None),
    };
    // The first component is a registry when it looks like a host: a dot, a port, `localhost`,
    // or capitals (which repository paths cannot have).
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => ("docker.io", name),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let library = if domain == "docker.io" && !path.contains('/') {
        "library/"
    } else {
        ""
    };
    match (digest, tag) {
        (Some(digest), _) => format!("{domain}/{library}{path}@{digest}"),
        (None, Some(tag)) => format!("{domain}/{library}{path}:{tag}"),
        (None, None) => format!("{domain}/{library}{path}:latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_hub_names() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize("foo/bar:1"), "docker.io/foo/bar:1");
        assert_eq!(normalize("foo/bar/baz"), "docker.io/foo/bar/baz:latest");
        assert_eq!(
            normalize("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("index.docker.io/library/nginx:1"),
            "docker.io/library/nginx:1"
        );
        assert_eq!(
            normalize("docker.io/library/busybox:latest"),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn other_registries() {
        assert_eq!(normalize("example.com:5000/x"), "example.com:5000/x:latest");
        assert_eq!(normalize("example.com/a/b:v2"), "example.com/a/b:v2");
        assert_eq!(normalize("localhost/x"), "localhost/x:latest");
        assert_eq!(normalize("localhost:5000/x:1"), "localhost:5000/x:1");
        assert_eq!(
            normalize("registry.k8s.io/pause:3.9"),
            "registry.k8s.io/pause:3.9"
        );
    }

    #[test]
    fn digests_are_kept_and_win_over_tags() {
        assert_eq!(
            normalize(&format!("busybox@{DIGEST}")),
            format!("docker.io/library/busybox@{DIGEST}")
        );
        assert_eq!(
            normalize(&format!("busybox:1.36@{DIGEST}")),
            format!("docker.io/library/busybox@{DIGEST}")
        );
        assert_eq!(
            normalize(&format!("example.com:5000/x@{DIGEST}")),
            format!("example.com:5000/x@{DIGEST}")
        );
    }

    #[test]
    fn normalizing_is_idempotent() {
        for reference in [
            "busybox",
            "foo/bar:1",
            "example.com:5000/x",
            "quay.io/a/b@sha256:00",
        ] {
            let once = normalize(reference);
            assert_eq!(normalize(&once), once);
        }
    }
}
