//! Requests to one repository: manifests and blobs, answering the registry's authentication
//! challenge once.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;

use super::auth::{Challenge, Credential};
use super::check::Check;
use super::{MAX_MANIFEST, RegistryError};

use crate::image::oci::{self, Descriptor};

/// The most bytes read of a token or an error answer (each a few hundred bytes).
const MAX_SMALL_BODY: u64 = 64 * 1024;

/// Every manifest format the node agent understands, for the `Accept` header.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// The whole of a manifest or token request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests to one repository, carrying the authorization the registry asked for once it has.
pub struct Session<'a> {
    http: &'a reqwest::Client,
    /// `scheme://host/v2/<repository>`.
    base: String,
    repository: String,
    credential: Option<Credential>,
    authorization: Option<String>,
}

impl<'a> Session<'a> {
    /// A session with the repository at `base` (`scheme://host/v2/<repository>`).
    pub(super) fn new(
        http: &'a reqwest::Client,
        base: String,
        repository: String,
        credential: Option<Credential>,
    ) -> Session<'a> {
        Session {
            http,
            base,
            repository,
            credential,
            authorization: None,
        }
    }

    /// The manifest (or index) `object` (a tag or a digest) names, by a HEAD request; its bytes
    /// too when the registry had to be asked with a GET because it named no digest.
    pub async fn resolve(
        &mut self,
        object: &str,
    ) -> Result<(Descriptor, Option<Vec<u8>>), RegistryError> {
        let url = format!("{}/manifests/{object}", self.base);
        let head = self.send(Method::HEAD, &url, true).await?;
        let digest = header(&head, "docker-content-digest");
        let media_type = header(&head, CONTENT_TYPE.as_str()).unwrap_or_default();
        // The header itself: a HEAD response's body (what `content_length` tells) is empty.
        let size = header(&head, CONTENT_LENGTH.as_str()).and_then(|l| l.parse().ok());
        if let (Some(digest), Some(size)) = (digest, size) {
            return Ok((Descriptor::new(&media_type, digest, size), None));
        }
        // Some registries answer HEAD without the digest: take the manifest itself.
        let response = self.send(Method::GET, &url, true).await?;
        let media_type = header(&response, CONTENT_TYPE.as_str()).unwrap_or_default();
        let named = header(&response, "docker-content-digest");
        let data = read_limited(response, &url).await?;
        let digest = match named {
            Some(digest) => digest,
            None if !object.contains(':') => oci::sha256(&data),
            None => object.to_string(),
        };
        let resolved = Descriptor::new(&media_type, digest, data.len() as u64);
        let mut check = Check::new(&resolved)?;
        check.update(&data)?;
        check.finish()?;
        Ok((resolved, Some(data)))
    }

    /// The manifest or index `descriptor` names, checked against it.
    pub async fn manifest(&mut self, descriptor: &Descriptor) -> Result<Vec<u8>, RegistryError> {
        if descriptor.size > MAX_MANIFEST {
            return Err(RegistryError::ManifestTooLarge {
                manifest: descriptor.digest.clone(),
                size: descriptor.size,
            });
        }
        let mut check = Check::new(descriptor)?;
        let url = format!("{}/manifests/{}", self.base, descriptor.digest);
        let response = self.send(Method::GET, &url, true).await?;
        let data = read_limited(response, &url).await?;
        check.update(&data)?;
        check.finish()?;
        Ok(data)
    }

    /// Starts downloading the blob `descriptor` names.
    pub async fn blob(&mut self, descriptor: &Descriptor) -> Result<Download, RegistryError> {
        let check = Check::new(descriptor)?;
        let url = format!("{}/blobs/{}", self.base, descriptor.digest);
        let response = self.send(Method::GET, &url, false).await?;
        Ok(Download {
            response,
            check: Some(check),
            url,
        })
    }

    /// Sends a request, answering one authentication challenge; fails unless it succeeds. A
    /// `manifest` request accepts every manifest format and has [`REQUEST_TIMEOUT`] to finish.
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        manifest: bool,
    ) -> Result<Response, RegistryError> {
        let mut challenged = false;
        loop {
            let mut request = self.http.request(method.clone(), url);
            if manifest {
                request = request
                    .header(ACCEPT, ACCEPT_MANIFESTS)
                    .timeout(REQUEST_TIMEOUT);
            }
            if let Some(authorization) = &self.authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            let response = request
                .send()
                .await
                .map_err(|e| request_error(&method, url, &e))?;
            if response.status() == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let challenges: Vec<Challenge> = response
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(Challenge::parse)
                    .collect();
                self.authorization = Some(self.authorize(url, &challenges).await?);
                continue;
            }
            return success(method, url, response).await;
        }
    }

    /// The `Authorization` header that answers `challenges`: a bearer token from the realm
    /// (asked for anonymously, or with the credential), or the credential itself.
    async fn authorize(
        &self,
        url: &str,
        challenges: &[Challenge],
    ) -> Result<String, RegistryError> {
        let unauthorized = |reason: String| RegistryError::Unauthorized {
            url: url.to_string(),
            reason,
        };
        if let Some(bearer) = challenges.iter().find(|c| c.is("Bearer")) {
            let realm = bearer
                .param("realm")
                .ok_or_else(|| unauthorized("a bearer challenge without a realm".into()))?;
            let scope = bearer.param("scope").map_or_else(
                || format!("repository:{}:pull", self.repository),
                str::to_string,
            );
            let mut query = vec![("scope", scope.as_str())];
            if let Some(service) = bearer.param("service") {
                query.push(("service", service));
            }
            let mut request = self.http.get(realm).query(&query).timeout(REQUEST_TIMEOUT);
            if let Some(c) = &self.credential {
                request = request.basic_auth(&c.username, Some(&c.password));
            }
            let response = request
                .send()
                .await
                .map_err(|e| request_error(&Method::GET, realm, &e))?;
            let response = success(Method::GET, realm, response).await?;
            #[derive(Deserialize)]
            struct Token {
                token: Option<String>,
                access_token: Option<String>,
            }
            let (body, whole) = read_at_most(response, realm, MAX_SMALL_BODY).await?;
            let token: Token = serde_json::from_slice(&body)
                .ok()
                .filter(|_| whole)
                .ok_or_else(|| {
                    unauthorized(format!(
                        "{realm} answered no token of at most {MAX_SMALL_BODY} bytes"
                    ))
                })?;
            let token = token
                .token
                .or(token.access_token)
                .ok_or_else(|| unauthorized(format!("{realm} gave no token")))?;
            return Ok(format!("Bearer {token}"));
        }
        if challenges.iter().any(|c| c.is("Basic")) {
            let c = self.credential.as_ref().ok_or_else(|| {
                unauthorized("the registry asks for a user name and password and no image pull secret has them".into())
            })?;
            let pair = format!("{}:{}", c.username, c.password);
            return Ok(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ));
        }
        Err(unauthorized(
            "the registry refused the request without a challenge this client can answer".into(),
        ))
    }
}

/// A blob coming from the registry, checked as it arrives.
pub struct Download {
    response: Response,
    /// None once the end was reached and checked.
    check: Option<Check>,
    url: String,
}

impl Download {
    /// The next bytes; None at the end, once the whole blob proved to match its descriptor.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, RegistryError> {
        let Some(check) = self.check.as_mut() else {
            return Ok(None);
        };
        match self
            .response
            .chunk()
            .await
            .map_err(|e| request_error(&Method::GET, &self.url, &e))?
        {
            Some(chunk) => {
                check.update(&chunk)?;
                Ok(Some(chunk))
            }
            None => {
                if let Some(check) = self.check.take() {
                    check.finish()?;
                }
                Ok(None)
            }
        }
    }
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `response` when it succeeded; otherwise the registry's errors (`{"errors": [...]}`) in an
/// error.
async fn success(method: Method, url: &str, response: Response) -> Result<Response, RegistryError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let body = read_at_most(response, url, MAX_SMALL_BODY)
        .await
        .map(|(body, _)| body)
        .unwrap_or_default();
    let detail = match serde_json::from_slice::<Errors>(&body) {
        Ok(errors) if !errors.errors.is_empty() => {
            let messages: Vec<String> = errors
                .errors
                .iter()
                .map(|e| match (e.code.as_str(), e.message.as_str()) {
                    (code, "") => code.to_string(),
                    (_, message) => message.to_string(),
                })
                .collect();
            format!(": {}", messages.join("; "))
        }
        _ => String::new(),
    };
    Err(RegistryError::Status {
        method,
        url: url.to_string(),
        status,
        detail,
    })
}

/// A manifest's body, refused when longer than [`MAX_MANIFEST`].
async fn read_limited(response: Response, url: &str) -> Result<Vec<u8>, RegistryError> {
    let (data, whole) = read_at_most(response, url, MAX_MANIFEST).await?;
    if !whole {
        return Err(RegistryError::ManifestTooLarge {
            manifest: url.to_string(),
            size: data.len() as u64,
        });
    }
    Ok(data)
}

/// The first bytes of a response's body, up to `limit` and a chunk, and whether that was all
/// of it: the rest is never read, whatever the registry sends.
async fn read_at_most(
    mut response: Response,
    url: &str,
    limit: u64,
) -> Result<(Vec<u8>, bool), RegistryError> {
    let mut data = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| request_error(&Method::GET, url, &e))?
    {
        data.extend_from_slice(&chunk);
        if data.len() as u64 > limit {
            return Ok((data, false));
        }
    }
    Ok((data, true))
}

/// A request's failure with its causes, which say what went wrong (refused, timed out, TLS).
fn request_error(method: &Method, url: &str, error: &reqwest::Error) -> RegistryError {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    RegistryError::Request {
        method: method.clone(),
        url: url.to_string(),
        reason,
    }
}
