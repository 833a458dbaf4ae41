//! `wasmkube plugin logs NAME [-f]`: a plugin's recent log lines from `plugins/NAME/log`, and with `-f` the lines that follow, until the plugin or the connection goes.

use std::io::Write as _;

use anyhow::{Context, bail};
use serde_json::Value;
use wasmkube_model::validation::is_dns1123_subdomain;

use super::{PLUGINS, fail};
use crate::client::Api;

/// What to show.
pub struct Options {
    pub follow: bool,
    pub tail: Option<u64>,
    pub timestamps: bool,
}

/// The path and query of the log of the Plugin `name`.
fn path(name: &str, options: &Options) -> anyhow::Result<String> {
    if !is_dns1123_subdomain(name) {
        bail!("{name:?} is not a Plugin name (a DNS-1123 subdomain)");
    }
    let mut query = Vec::new();
    if options.follow {
        query.push("follow=true".to_string());
    }
    if options.timestamps {
        query.push("timestamps=true".to_string());
    }
    if let Some(tail) = options.tail {
        query.push(format!("tailLines={tail}"));
    }
    let mut path = format!("{PLUGINS}/{name}/log");
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    Ok(path)
}

/// Copies the log of the Plugin `name` to stdout as it arrives.
pub async fn show(api: &Api, name: &str, options: &Options) -> anyhow::Result<()> {
    let url = format!("{}{}", api.server, path(name, options)?);
    let mut response = api.client.get(url).send().await?;
    let code = response.status().as_u16();
    if code != 200 {
        let status: Value = response.json().await.unwrap_or(Value::Null);
        return Err(fail(
            &format!("reading the log of plugin {name}"),
            code,
            &status,
        ));
    }
    let mut out = std::io::stdout();
    while let Some(chunk) = response.chunk().await.context("reading the log")? {
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_carries_the_options_and_refuses_names_that_are_not_names() {
        let plain = Options {
            follow: false,
            tail: None,
            timestamps: false,
        };
        assert_eq!(
            path("mirror", &plain).expect("a name"),
            "/apis/wasmkube.dev/v1alpha1/plugins/mirror/log"
        );
        let all = Options {
            follow: true,
            tail: Some(5),
            timestamps: true,
        };
        assert_eq!(
            path("mirror", &all).expect("a name"),
            "/apis/wasmkube.dev/v1alpha1/plugins/mirror/log?follow=true&timestamps=true&tailLines=5"
        );
        for bad in ["../pods", "a/b", "x?follow=true", ""] {
            assert!(path(bad, &plain).is_err(), "{bad}");
        }
    }
}
