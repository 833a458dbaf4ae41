//! A container's image by its `imagePullPolicy`: found on the node, pulled from its registry
//! with the pod's image pull secrets, or refused with the kubelet's waiting reasons.

use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;
use tokio::time::Instant;
use wasmkube_model::validation::is_dns1123_subdomain;

use crate::api::Api;
use crate::image::Image;
use crate::image::registry::Keychain;

use super::Context;
use super::event::Subject;
use super::slot::{Slot, State};

/// How long a failed pull shows `ErrImagePull` before the rest of its back-off shows as
/// `ImagePullBackOff` (the kubelet shows it until its next look at the pod).
const SHOW_ERROR: Duration = Duration::from_secs(2);

/// The policy Kubernetes defaults to: `Always` for `:latest` or no tag, else `IfNotPresent`.
fn pull_policy(container: &Container, reference: &str) -> String {
    container.image_pull_policy.clone().unwrap_or_else(|| {
        if reference.ends_with(":latest")
            || !reference.rsplit('/').next().unwrap_or("").contains(':')
        {
            "Always".into()
        } else {
            "IfNotPresent".into()
        }
    })
}

/// The image for the container of `slot`: the node's (`IfNotPresent`, `Never`) or pulled
/// (`Always`, or absent and `IfNotPresent`). None when it cannot be had now; the slot then says
/// why and when to try again.
pub async fn image(
    ctx: &Context,
    pod: &Pod,
    container: &Container,
    slot: &mut Slot,
) -> Option<Image> {
    let now = Instant::now();
    let events = &ctx.events;
    let subject = Subject::container(pod, &container.name);
    let reference = container.image.clone().unwrap_or_default();
    if back_off(slot, &reference, now) {
        events.normal(
            &subject,
            "BackOff",
            &format!("Back-off pulling image {reference:?}"),
        );
        events.warning(&subject, "Failed", "Error: ImagePullBackOff");
        return None;
    }
    let policy = pull_policy(container, &reference);
    if policy != "Always" {
        match ctx.runtime.image(&reference).await {
            Ok(Some(image)) => {
                let message = format!("Container image {reference:?} already present on machine");
                events.normal(&subject, "Pulled", &message);
                return Some(image);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(image = %reference, error = %e, "resolving an image");
                let message = format!("Failed to inspect image {reference:?}: {e}");
                events.warning(&subject, "InspectFailed", &message);
                failed(slot, e.to_string(), now);
                return None;
            }
        }
    }
    if policy == "Never" {
        let message =
            format!("Container image {reference:?} is not present with pull policy of Never");
        events.warning(&subject, "ErrImageNeverPull", &message);
        events.warning(&subject, "Failed", "Error: ErrImageNeverPull");
        slot.failed_to_start("ErrImageNeverPull", message, now);
        return None;
    }
    let began = Instant::now();
    let keychain = keychain(&ctx.api, pod).await;
    events.normal(&subject, "Pulling", &format!("Pulling image {reference:?}"));
    let pulling = Instant::now();
    match ctx.runtime.pull(&reference, &keychain).await {
        Ok(image) => {
            let message = format!(
                "Successfully pulled image {reference:?} in {} ({} including waiting)",
                go_duration(pulling.elapsed()),
                go_duration(began.elapsed())
            );
            events.normal(&subject, "Pulled", &message);
            Some(image)
        }
        Err(e) => {
            tracing::warn!(image = %reference, error = %e, "pulling an image");
            let message = format!("failed to pull image {reference:?}: {e}");
            events.warning(
                &subject,
                "Failed",
                &format!("Failed to pull image {reference:?}: {e}"),
            );
            events.warning(&subject, "Failed", "Error: ErrImagePull");
            failed(slot, message, now);
            None
        }
    }
}

/// A duration as Go prints one cut to milliseconds (`512ms`, `1.234s`), as the kubelet's
/// messages show them.
fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else {
        let text = format!("{}.{:03}", millis / 1000, millis % 1000);
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// A pull failed: `ErrImagePull` with what went wrong, for a moment, then the back-off.
fn failed(slot: &mut Slot, message: String, now: Instant) {
    slot.failed_to_start("ErrImagePull", message, now);
    if let State::Waiting { until, .. } = &mut slot.state {
        *until = Some(now + SHOW_ERROR.min(slot.backoff));
    }
}

/// Once a failed pull's error was shown: the rest of its back-off as `ImagePullBackOff`, before
/// the next pull. False when the slot is not showing a pull's error.
fn back_off(slot: &mut Slot, reference: &str, now: Instant) -> bool {
    if !matches!(&slot.state, State::Waiting { reason, .. } if reason == "ErrImagePull") {
        return false;
    }
    slot.state = State::Waiting {
        reason: "ImagePullBackOff".into(),
        message: Some(format!("Back-off pulling image \"{reference}\"")),
        until: Some(now + slot.backoff.saturating_sub(SHOW_ERROR)),
    };
    true
}

/// The registry credentials in the pod's image pull secrets. A secret that is missing,
/// unreadable or of another type is skipped with a warning, as the kubelet does.
async fn keychain(api: &Api, pod: &Pod) -> Keychain {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut keychain = Keychain::default();
    let names = pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|r| r.name.as_str());
    for name in names {
        if !is_dns1123_subdomain(name) {
            tracing::warn!(%namespace, secret = %name, "image pull secret name is not a DNS-1123 subdomain; pulling without it");
            continue;
        }
        let secret = match api
            .get(&format!("/api/v1/namespaces/{namespace}/secrets/{name}"))
            .await
        {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                tracing::warn!(%namespace, secret = %name, "image pull secret not found; pulling without it");
                continue;
            }
            Err(e) => {
                tracing::warn!(%namespace, secret = %name, error = %e, "reading an image pull secret; pulling without it");
                continue;
            }
        };
        if !add(&mut keychain, &secret) {
            tracing::warn!(%namespace, secret = %name, "image pull secret is not a readable kubernetes.io/dockerconfigjson or dockercfg Secret; pulling without it");
        }
    }
    keychain
}

/// Adds the credentials of a `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`
/// Secret; false for other Secrets and unreadable ones.
fn add(keychain: &mut Keychain, secret: &Value) -> bool {
    let (key, legacy) = match secret.get("type").and_then(Value::as_str) {
        Some("kubernetes.io/dockerconfigjson") => (".dockerconfigjson", false),
        Some("kubernetes.io/dockercfg") => (".dockercfg", true),
        _ => return false,
    };
    secret
        .get("data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .is_some_and(|json| keychain.add(&json, legacy))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn encode(value: &Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(value.to_string())
    }

    #[test]
    fn pull_secrets_of_both_docker_types_are_read() {
        let auth = base64::engine::general_purpose::STANDARD.encode("me:pw");
        let config = json!({"auths": {"registry.example.com": {"auth": auth}}});
        let legacy = json!({"old.example.com": {"auth": auth}});
        let mut keychain = Keychain::default();
        assert!(add(
            &mut keychain,
            &json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": encode(&config)}})
        ));
        assert!(add(
            &mut keychain,
            &json!({"type": "kubernetes.io/dockercfg", "data": {".dockercfg": encode(&legacy)}})
        ));
        assert!(keychain.find("registry.example.com", "a/b").is_some());
        assert!(keychain.find("old.example.com", "a/b").is_some());
        // The key must go with the type, as the kubelet reads them.
        assert!(!add(
            &mut keychain,
            &json!({"type": "Opaque", "data": {".dockerconfigjson": encode(&config)}})
        ));
        assert!(!add(
            &mut keychain,
            &json!({"type": "kubernetes.io/dockercfg", "data": {".dockerconfigjson": encode(&config)}})
        ));
        assert!(!add(
            &mut keychain,
            &json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "%%"}})
        ));
    }

    /// The waiting slot's reason, message and end.
    fn waiting(slot: &Slot) -> (&str, Option<&str>, Option<Instant>) {
        match &slot.state {
            State::Waiting {
                reason,
                message,
                until,
            } => (reason, message.as_deref(), *until),
            other => panic!("not waiting: {other:?}"),
        }
    }

    #[test]
    fn a_failed_pull_shows_its_error_then_backs_off() {
        let now = Instant::now();
        let mut slot = Slot::new("app", "r/x:1", false);
        failed(&mut slot, "boom".into(), now);
        let (reason, message, until) = waiting(&slot);
        assert_eq!(reason, "ErrImagePull");
        assert_eq!(message, Some("boom"));
        assert_eq!(until, Some(now + SHOW_ERROR));
        assert!(slot.backoff > SHOW_ERROR);

        let later = now + SHOW_ERROR;
        assert!(back_off(&mut slot, "r/x:1", later));
        let (reason, message, until) = waiting(&slot);
        assert_eq!(reason, "ImagePullBackOff");
        assert_eq!(message, Some("Back-off pulling image \"r/x:1\""));
        assert_eq!(until, Some(now + slot.backoff));
        // The back-off over, the next start pulls again.
        let over = now + slot.backoff;
        assert!(!back_off(&mut slot, "r/x:1", over));
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_millis(512)), "512ms");
        assert_eq!(go_duration(Duration::from_millis(1234)), "1.234s");
        assert_eq!(go_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(go_duration(Duration::from_secs(3)), "3s");
    }

    #[test]
    fn default_policies() {
        let container = |image: &str, policy: Option<&str>| Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(Into::into),
            ..Container::default()
        };
        assert_eq!(
            pull_policy(&container("busybox", None), "busybox"),
            "Always"
        );
        assert_eq!(
            pull_policy(&container("r:5000/x", None), "r:5000/x"),
            "Always"
        );
        assert_eq!(
            pull_policy(&container("r:5000/x:1", None), "r:5000/x:1"),
            "IfNotPresent"
        );
        assert_eq!(
            pull_policy(&container("busybox", Some("Never")), "busybox"),
            "Never"
        );
    }
}
