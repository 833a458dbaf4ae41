//! A controller's candidate version in shadow: `plugin install --shadow` puts it beside the active one (`spec.shadow`), `plugin promote` makes it the active version with the permissions it names, `plugin discard` drops it.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use wasmkube_controller::module::{self, PluginKind};

use super::{MODULES, PLUGINS, fail, grant};
use crate::client::Api;

/// The Plugin `name`, which must exist.
async fn get(api: &Api, name: &str) -> anyhow::Result<Value> {
    let (code, plugin) = api
        .send(api.client.get(format!("{}{PLUGINS}/{name}", api.server)))
        .await?;
    match code {
        200 => Ok(plugin),
        404 => bail!("plugin {name} is not installed"),
        _ => Err(fail("reading the Plugin", code, &plugin)),
    }
}

/// A JSON merge patch of the Plugin `name`, made only if it still has `resource_version` (a
/// change in between is a 409, not overwritten).
async fn patch(
    api: &Api,
    name: &str,
    resource_version: &Value,
    patch: Value,
) -> anyhow::Result<()> {
    let mut patch = patch;
    patch["metadata"]["resourceVersion"] = resource_version.clone();
    let (code, status) = api
        .send(
            api.client
                .patch(format!("{}{PLUGINS}/{name}", api.server))
                .header("Content-Type", "application/merge-patch+json")
                .body(patch.to_string()),
        )
        .await?;
    if !(200..300).contains(&code) {
        return Err(fail("writing the Plugin", code, &status));
    }
    Ok(())
}

/// The shadow's `spec.shadow.module` of `plugin`, or why there is none.
fn shadow_module(plugin: &Value, name: &str) -> anyhow::Result<Value> {
    match plugin.pointer("/spec/shadow/module") {
        Some(module) if module.is_object() => Ok(module.clone()),
        _ => bail!(
            "plugin {name} has no shadow version: install one with `wasmkube plugin install FILE --name {name} --shadow`"
        ),
    }
}

/// Runs the uploaded component `bytes` beside the active version of the controller Plugin
/// `name`, which must be installed: its writes are dry runs, compared with the active one's.
pub async fn install(api: &Api, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let plugin = get(api, name).await?;
    if plugin["spec"]["kind"] != PluginKind::Controller.as_str() {
        bail!(
            "plugin {name} is a scheduling policy: a candidate policy runs in a SchedulerProfile's spec.shadow"
        );
    }
    // Asked what it reconciles here, so a module that is no controller is refused before upload.
    grant::permissions(PluginKind::Controller, bytes).await?;
    super::upload(api, bytes).await?;
    let digest = module::digest(bytes);
    let shadow = json!({"module": module::module_ref(&digest, bytes.len())});
    patch(
        api,
        name,
        &plugin["metadata"]["resourceVersion"],
        json!({"spec": {"shadow": shadow}}),
    )
    .await?;
    println!(
        "plugin.wasmkube.dev/{name} shadow installed: {digest} ({} bytes) runs beside {} with the plugin's permissions; its writes are dry runs",
        bytes.len(),
        plugin["spec"]["module"]["digest"]
            .as_str()
            .unwrap_or_default()
    );
    Ok(())
}

/// The bytes of the module `module_ref` (`{digest, chunks}`), from its PluginModule chunks.
async fn download(api: &Api, module_ref: &Value) -> anyhow::Result<Vec<u8>> {
    let digest = module_ref["digest"].as_str().unwrap_or_default();
    let count = module_ref["chunks"]
        .as_u64()
        .and_then(|c| usize::try_from(c).ok())
        .context("the shadow module names no chunk count")?;
    let mut chunks = std::collections::HashMap::new();
    for i in 0..count {
        let chunk = module::chunk_name(digest, i);
        let (code, object) = api
            .send(api.client.get(format!("{}{MODULES}/{chunk}", api.server)))
            .await?;
        if code == 200 {
            chunks.insert(chunk, object);
        }
    }
    Ok(module::assemble(digest, count, |chunk| {
        chunks.remove(chunk)
    })?)
}

/// Makes the shadow version of `name` the active one, holding the permissions its registration
/// names (shown, and confirmed unless `yes`): the running version hands over its work queue.
pub async fn promote(api: &Api, name: &str, yes: bool) -> anyhow::Result<()> {
    let plugin = get(api, name).await?;
    let shadow = shadow_module(&plugin, name)?;
    let bytes = download(api, &shadow).await?;
    let permissions = grant::permissions(PluginKind::Controller, &bytes).await?;
    grant::confirm(&grant::describe(name, &permissions), yes)?;
    // An operator's version from now on: the binary no longer upgrades it.
    let promoted = json!({
        "metadata": {"annotations": {module::MANAGED_BY: module::USER}},
        "spec": {"module": shadow, "permissions": permissions, "shadow": null},
    });
    patch(api, name, &plugin["metadata"]["resourceVersion"], promoted).await?;
    println!(
        "plugin.wasmkube.dev/{name} promoted: {} is active (was {})",
        shadow["digest"].as_str().unwrap_or_default(),
        plugin["spec"]["module"]["digest"]
            .as_str()
            .unwrap_or_default()
    );
    Ok(())
}

/// Stops the shadow version of `name`; the active one runs on as it did.
pub async fn discard(api: &Api, name: &str) -> anyhow::Result<()> {
    let plugin = get(api, name).await?;
    let shadow = shadow_module(&plugin, name)?;
    let resource_version = &plugin["metadata"]["resourceVersion"];
    patch(
        api,
        name,
        resource_version,
        json!({"spec": {"shadow": null}}),
    )
    .await?;
    println!(
        "plugin.wasmkube.dev/{name} shadow {} discarded",
        shadow["digest"].as_str().unwrap_or_default()
    );
    Ok(())
}
