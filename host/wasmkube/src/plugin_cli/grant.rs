//! What `wasmkube plugin install` grants: the permissions the component's registration names (its ClusterRole's rules), shown to the operator and confirmed on a terminal or by `--yes`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context, bail};
use serde_json::Value;
use wasmkube_apiserver::auth::plugin;
use wasmkube_controller::module::PluginKind;
use wasmkube_runtime::{Limits, Runtime};

/// The permissions (`spec.permissions`) the component `bytes` of `kind` needs: for a controller,
/// what its registration names (it is compiled and asked, with access to nothing); for a
/// scheduling policy, the reads every policy has.
pub async fn permissions(kind: PluginKind, bytes: &[u8]) -> anyhow::Result<Value> {
    if kind == PluginKind::Scheduler {
        return Ok(wasmkube_scheduler::source::policy_permissions());
    }
    let cache = tempfile::tempdir().context("a directory to compile the component in")?;
    let runtime = Runtime::new(cache.path())?;
    let module = runtime.load(bytes).context("compiling the component")?;
    let registration = wasmkube_controller::plugin::describe(&module, Limits::default())
        .await
        .context("asking the component what it reconciles")?;
    Ok(wasmkube_controller::plugin::registration_permissions(
        &registration,
    ))
}

/// What the Plugin `name` holding `permissions` will be: its ServiceAccount and ClusterRole with
/// its rules, in RBAC's compact form.
pub fn describe(name: &str, permissions: &Value) -> String {
    let mut text = format!(
        "plugin {name} will run as the ServiceAccount {}/{}, bound to the ClusterRole {} with these rules:\n",
        plugin::NAMESPACE,
        plugin::service_account(name),
        plugin::role(name)
    );
    for rule in plugin::rules(permissions) {
        text.push_str(&format!("  {}\n", rule.compact_string()));
    }
    text
}

/// Shows what will be granted and asks to go on: `yes` skips the question; without a terminal
/// to ask on, nothing is granted.
pub fn confirm(description: &str, yes: bool) -> anyhow::Result<()> {
    print!("{description}");
    std::io::stdout().flush()?;
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "not installed: these permissions need an operator's confirmation on a terminal; pass --yes to grant them without asking"
        );
    }
    eprint!("Grant them and install? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        bail!("not installed: the permissions were not confirmed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_description_names_the_identity_and_every_rule() {
        let permissions = json!([
            {"group": "", "resources": ["configmaps"], "verbs": ["get", "list"]},
            {"group": "", "resources": ["events"], "verbs": ["create"]},
        ]);
        let text = describe("echo", &permissions);
        assert!(
            text.contains("ServiceAccount kube-system/plugin-echo"),
            "{text}"
        );
        assert!(text.contains("ClusterRole wasmkube:plugin:echo"), "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains(r#"Resources:["configmaps"]"#), "{text}");
    }
}
