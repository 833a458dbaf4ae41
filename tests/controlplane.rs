//! Several control-plane hosts: `wasmkube join --control-plane` refuses a wrong certificate key or
//! an absent upload and writes nothing, only bootstrap tokens of the node group may read the
//! uploaded Secret, and a server stores into an etcd that serves over TLS and asks for client
//! certificates. (Joining and leading together: tests/leader.rs.)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use wasmkube_e2e::{Cluster, binary};
use wasmkube_store::etcd::EtcdTls;
use wasmkube_store::etcd::testing::{EtcdServer, ServingTls};

/// `etcd://HOST:PORT` of a test etcd.
fn store_of(etcd: &EtcdServer) -> String {
    format!("etcd://{}", etcd.endpoint().trim_start_matches("http://"))
}

/// Runs `wasmkube ARGS`, which must fail within a minute; its stderr.
fn fails(args: &[&str]) -> Result<String> {
    let mut child = Command::new(binary())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("wasmkube {} still runs after a minute", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        !out.status.success(),
        "wasmkube {} succeeded",
        args.join(" ")
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs the `join --control-plane` line `line` with its certificate key replaced by `key`, the
/// data directory `dir` on etcd `store`, which must fail; its stderr.
fn join_fails(line: &[String], key: &str, dir: &Path, store: &str) -> Result<String> {
    let mut args: Vec<&str> = vec!["join"];
    let end = line
        .iter()
        .position(|a| a == "--control-plane")
        .unwrap_or(line.len());
    args.extend(line[..end].iter().map(String::as_str));
    let dir = dir.display().to_string();
    args.extend([
        "--control-plane",
        "--certificate-key",
        key,
        "--port",
        "0",
        "--store",
        store,
        "--data-dir",
        &dir,
    ]);
    fails(&args)
}

#[test]
fn a_wrong_key_or_no_upload_writes_nothing_and_only_node_tokens_read_the_secret() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let etcd = runtime
        .block_on(EtcdServer::start())
        .context("starting etcd (run scripts/etcd.sh)")?;
    let store = store_of(&etcd);
    let a = Cluster::start_with(&["--store", &store])?;
    let dir = tempfile::tempdir()?;
    let joined = dir.path().join("second");
    let key = "ab".repeat(32);

    // A token, but nothing uploaded: the Secret is absent (and no Role lets tokens read it).
    let plain = a.wasmkube(&["token", "create"])?;
    let line: Vec<String> = plain
        .lines()
        .nth(1)
        .context("the join line")?
        .split_whitespace()
        .skip(2)
        .map(str::to_string)
        .collect();
    let err = join_fails(&line, &key, &joined, &store)?;
    assert!(
        err.contains("no Secret kube-system/wasmkube-certs"),
        "{err}"
    );
    assert!(!joined.join("pki").exists(), "pki written without a Secret");

    // Uploaded, but another key: refused, nothing written.
    let line = a.upload_certs()?;
    let err = join_fails(&line, &key, &joined, &store)?;
    assert!(err.contains("wrong --certificate-key"), "{err}");
    assert!(!joined.join("pki").exists(), "pki written with a wrong key");

    let err = join_fails(&line, "not-hex", &joined, &store)?;
    assert!(err.contains("64 hexadecimal digits"), "{err}");

    // Bootstrap tokens of the node group may get that one Secret; no other token, no other
    // Secret, no listing.
    let can_i = |what: &[&str], groups: &[&str]| -> Result<String> {
        let mut args = vec![
            "auth",
            "can-i",
            "-n",
            "kube-system",
            "--as",
            "system:bootstrap:abcdef",
        ];
        args.extend(what);
        for group in groups {
            args.extend(["--as-group", group]);
        }
        let out = a.kubectl(&args)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let node_group = [
        "system:bootstrappers",
        "system:bootstrappers:kubeadm:default-node-token",
    ];
    let secret = ["get", "secret/wasmkube-certs"];
    assert_eq!(can_i(&secret, &node_group)?, "yes");
    assert_eq!(can_i(&secret, &["system:bootstrappers"])?, "no");
    assert_eq!(can_i(&["list", "secrets"], &node_group)?, "no");
    assert_eq!(can_i(&["get", "secret/other"], &node_group)?, "no");
    assert_eq!(
        can_i(&["update", "secret/wasmkube-certs"], &node_group)?,
        "no"
    );
    drop(a);
    drop(etcd);
    Ok(())
}

/// A CA, and a certificate of it for `names` (IP addresses or DNS names) with `usage`: its PEM
/// and key.
struct Authority {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Authority {
    fn new() -> Result<Authority> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "etcd-test-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate()?;
        let pem = params.clone().self_signed(&key)?.pem();
        Ok(Authority { params, key, pem })
    }

    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Result<(String, String)> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let ca = self.params.clone().self_signed(&self.key)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

#[test]
fn a_server_stores_into_etcd_over_tls_with_a_client_certificate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Authority::new()?;
    let (server_cert, server_key) = ca.issue("etcd", ExtendedKeyUsagePurpose::ServerAuth)?;
    let (client_cert, client_key) = ca.issue("wasmkube", ExtendedKeyUsagePurpose::ClientAuth)?;
    let file = |name: &str, text: &str| -> Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    };
    let ca_file = file("ca.crt", &ca.pem)?;
    let cert_file = file("client.crt", &client_cert)?;
    let key_file = file("client.key", &client_key)?;
    let tls = ServingTls {
        cert_file: file("server.crt", &server_cert)?.into(),
        key_file: file("server.key", &server_key)?.into(),
        client_ca_file: ca_file.clone().into(),
        client: EtcdTls {
            ca_pem: ca.pem.clone(),
            client: Some((client_cert, client_key)),
        },
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let etcd = runtime
        .block_on(EtcdServer::start_tls(&tls))
        .context("starting etcd over TLS (run scripts/etcd.sh)")?;
    let store = format!("etcds://{}", etcd.endpoint().trim_start_matches("https://"));

    // Without a client certificate etcd refuses the connection: the server says so and stops.
    let data = tempfile::tempdir()?;
    let data_dir = data.path().display().to_string();
    let server_fails = |store: &str| {
        let only_ca = ["--etcd-cafile", &ca_file];
        fails(
            &[
                &[
                    "server",
                    "--data-dir",
                    &data_dir,
                    "--port",
                    "0",
                    "--store",
                    store,
                ][..],
                &only_ca,
            ]
            .concat(),
        )
    };
    let err = server_fails(&store)?;
    assert!(err.contains("connecting to etcd"), "{err}");
    // TLS flags with a plain-HTTP store are refused.
    let plain = format!("etcd://{}", etcd.endpoint().trim_start_matches("https://"));
    assert!(server_fails(&plain)?.contains("etcds://"));

    let c = Cluster::start_with(&[
        "--store",
        &store,
        "--etcd-cafile",
        &ca_file,
        "--etcd-certfile",
        &cert_file,
        "--etcd-keyfile",
        &key_file,
    ])?;
    c.ok(&["create", "configmap", "over-tls", "--from-literal=a=b"])?;
    let value = c.ok(&["get", "configmap", "over-tls", "-o", "jsonpath={.data.a}"])?;
    assert_eq!(value, "b");
    // It is in that etcd: read back through a TLS client of the test's own.
    let found = runtime.block_on(async {
        let options = etcd_client::ConnectOptions::new().with_tls(tls.client.options());
        let mut client = etcd_client::Client::connect([etcd.endpoint()], Some(options)).await?;
        let all = etcd_client::GetOptions::new()
            .with_all_keys()
            .with_keys_only();
        let got = client.get("", Some(all)).await?;
        anyhow::Ok(
            got.kvs()
                .iter()
                .any(|kv| String::from_utf8_lossy(kv.key()).contains("over-tls")),
        )
    })?;
    assert!(found, "the ConfigMap is not in the TLS etcd");
    drop(c);
    drop(etcd);
    Ok(())
}
