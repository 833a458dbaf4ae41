//! A container's image: found on the node, or refused by its `imagePullPolicy`.

use k8s_openapi::api::core::v1::Container;

use crate::image::Image;
use crate::runtime::Runtime;

use super::launch::Refusal;
use super::slot::Slot;

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

/// The image for the container of `slot`, or why the container cannot start.
pub async fn image(
    runtime: &dyn Runtime,
    container: &Container,
    slot: &Slot,
) -> Result<Image, Refusal> {
    let reference = container.image.clone().unwrap_or_default();
    let pull_policy = pull_policy(container, &reference);
    match runtime.image(&reference).await {
        Ok(Some(image)) => Ok(image),
        Ok(None) if pull_policy == "Never" => Err(Refusal {
            reason: "ErrImageNeverPull",
            message: format!(
                "Container image \"{reference}\" is not present with pull policy of Never"
            ),
        }),
        Ok(None) => Err(Refusal {
            reason: if slot.backoff.is_zero() {
                "ErrImagePull"
            } else {
                "ImagePullBackOff"
            },
            message: format!(
                "Back-off pulling image \"{reference}\": the image is not on this node and no registry is reachable; import it with `wasmkube image import`"
            ),
        }),
        Err(e) => Err(Refusal {
            reason: "ErrImagePull",
            message: e.to_string(),
        }),
    }
}
