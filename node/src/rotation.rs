//! The node's certificates renewed before they expire, as the kubelet's certificate manager:
//! at 80 % of their lifetime, a new key and a request made as the node. Its client certificate:
//! the kubeconfig rewritten and the agent's client switched to the new one.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, UnixTime};

use crate::api::{Api, Connection, Credential};
use crate::bootstrap::{self, BootstrapError};

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("the node's certificate: {0}")]
    Certificate(String),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error(transparent)]
    Connection(#[from] crate::api::ConnectionError),
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
}

/// How long a failed renewal waits before the next try.
const RETRY: Duration = Duration::from_secs(30);

/// The `notBefore` and `notAfter` of the PEM certificate `cert_pem`, which must chain to the
/// PEM CA `ca_pem` for `usage` (client or server auth): the times webpki names when the
/// certificate is checked before its start and after its end; then the chain is checked at a
/// time within them.
pub fn lifetime(
    cert_pem: &str,
    ca_pem: &str,
    usage: webpki::KeyUsage,
) -> Result<(SystemTime, SystemTime), RotationError> {
    let bad = |e: &dyn std::fmt::Display| RotationError::Certificate(e.to_string());
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| bad(&e))?;
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| bad(&e))?;
    let anchor = webpki::anchor_from_trusted_cert(&ca).map_err(|e| bad(&e))?;
    let cert = webpki::EndEntityCert::try_from(&cert).map_err(|e| bad(&e))?;
    let check = |seconds: u64| {
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            std::slice::from_ref(&anchor),
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(seconds)),
            usage,
            None,
            None,
        )
        .map(drop)
    };
    // The year 9999: after any certificate's end.
    let (
        Err(webpki::Error::CertNotValidYet { not_before, .. }),
        Err(webpki::Error::CertExpired { not_after, .. }),
    ) = (check(0), check(253_402_300_799))
    else {
        return Err(bad(&"its validity is unreadable"));
    };
    // Within its lifetime the whole chain is checked: a certificate of another CA fails here.
    let middle = not_before.as_secs() / 2 + not_after.as_secs() / 2;
    check(middle).map_err(|e| {
        bad(&format!(
            "not a certificate of the cluster CA for its use: {e}"
        ))
    })?;
    let time = |t: UnixTime| SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs());
    Ok((time(not_before), time(not_after)))
}

/// When a certificate valid from `from` to `to` is renewed: 80 % into its lifetime.
pub fn renewal_time(from: SystemTime, to: SystemTime) -> SystemTime {
    let lifetime = to.duration_since(from).unwrap_or_default();
    from + lifetime.mul_f64(0.8)
}

/// Runs `renew` (which waits until its certificate is due, then renews it) again and again,
/// forever; a failure is logged and tried again after a pause.
pub async fn forever<F, R, E>(what: &str, mut renew: F)
where
    F: FnMut() -> R,
    R: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    loop {
        match renew().await {
            Ok(()) => tracing::info!("the node has a new {what} certificate"),
            Err(e) => {
                tracing::warn!(error = %e, "renewing the node's {what} certificate");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Waits until the certificate `cert_pem` (of the CA `ca_pem`, for `usage`) is due for renewal;
/// at once if it is already.
pub async fn until_due(
    cert_pem: &str,
    ca_pem: &str,
    usage: webpki::KeyUsage,
) -> Result<(), RotationError> {
    let (from, to) = lifetime(cert_pem, ca_pem, usage)?;
    if let Ok(wait) = renewal_time(from, to).duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    Ok(())
}

/// Renews the client certificate of the kubeconfig `kubeconfig` (which `api` connects with)
/// for the node `node` at each renewal time, forever.
pub async fn rotate(api: Api, kubeconfig: PathBuf, node: String) {
    forever("client", || renew_when_due(&api, &kubeconfig, &node)).await;
}

/// Waits until the certificate is due, then renews it.
async fn renew_when_due(
    api: &Api,
    kubeconfig: &std::path::Path,
    node: &str,
) -> Result<(), RotationError> {
    let connection = Connection::from_kubeconfig(kubeconfig)?;
    let (Credential::Certificate { cert_pem, .. }, Some(ca_pem)) =
        (&connection.credential, &connection.ca_pem)
    else {
        return Err(RotationError::Certificate(
            "the kubeconfig holds no client certificate and CA".into(),
        ));
    };
    until_due(cert_pem, ca_pem, webpki::KeyUsage::client_auth()).await?;
    let (cert_pem, key_pem) = bootstrap::client_certificate(api, node).await?;
    let renewed = Connection {
        credential: Credential::Certificate { cert_pem, key_pem },
        ..connection
    };
    bootstrap::write_private(kubeconfig, &renewed.kubeconfig())?;
    api.reconnect(&Connection::from_kubeconfig(kubeconfig)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::tests::{issue, new_ca};

    fn client(ca: &rcgen::Certificate, ca_key: &rcgen::KeyPair, from: u64, to: u64) -> String {
        let purpose = rcgen::ExtendedKeyUsagePurpose::ClientAuth;
        issue(ca, ca_key, purpose, &[], (from, to)).0
    }

    #[test]
    fn the_lifetime_is_read_from_a_certificate_of_the_ca() {
        let (ca, key) = new_ca();
        let (from, to) = (1_800_000_000, 1_800_000_000 + 365 * 86_400);
        let cert = client(&ca, &key, from, to);
        let epoch = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let client = webpki::KeyUsage::client_auth;
        assert_eq!(
            lifetime(&cert, &ca.pem(), client()).expect("lifetime"),
            (epoch(from), epoch(to))
        );
        let (other, _) = new_ca();
        assert!(lifetime(&cert, &other.pem(), client()).is_err());
        assert!(lifetime("junk", &ca.pem(), client()).is_err());
        // A client certificate is no serving certificate.
        assert!(lifetime(&cert, &ca.pem(), webpki::KeyUsage::server_auth()).is_err());
    }

    #[test]
    fn renewal_is_at_eighty_percent() {
        let from = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let to = from + Duration::from_secs(1000);
        assert_eq!(renewal_time(from, to), from + Duration::from_secs(800));
        assert_eq!(renewal_time(to, from), to);
    }
}
