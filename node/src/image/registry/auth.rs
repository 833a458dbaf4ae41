//! Registry authentication: `WWW-Authenticate` challenges and credentials from Docker config files.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;

/// One challenge of a `WWW-Authenticate` header: its scheme and parameters (names lowercased).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

impl Challenge {
    /// The challenges of a `WWW-Authenticate` header value (RFC 7235: `Scheme k=v, k="v", …`,
    /// several challenges separated by commas), in order. What cannot be parsed ends the list.
    pub fn parse(header: &str) -> Vec<Challenge> {
        let mut challenges: Vec<Challenge> = Vec::new();
        let mut rest = header.trim_start();
        while !rest.is_empty() {
            let (word, after) = token(rest);
            if word.is_empty() {
                break;
            }
            let after = after.trim_start();
            match (after.strip_prefix('='), challenges.last_mut()) {
                // `k=v` belongs to the challenge before it.
                (Some(value), Some(challenge)) if !value.starts_with('=') => {
                    let Some((value, after)) = param_value(value.trim_start()) else {
                        break;
                    };
                    challenge.params.insert(word.to_ascii_lowercase(), value);
                    rest = after;
                }
                (Some(_), _) => break,
                // A new scheme (a token68 after it is not used by registries and is skipped).
                (None, _) => {
                    challenges.push(Challenge {
                        scheme: word.to_string(),
                        params: HashMap::new(),
                    });
                    rest = after;
                }
            }
            rest = rest.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        challenges
    }

    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// The longest prefix of `text` made of token characters, and what follows it.
fn token(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// A parameter's value, quoted (with `\` escapes) or bare (up to a comma or a space, which
/// lets the unquoted URLs some registries send through), and what follows it.
fn param_value(text: &str) -> Option<(String, &str)> {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text
            .find(|c: char| c == ',' || c.is_whitespace())
            .unwrap_or(text.len());
        let (value, rest) = text.split_at(end);
        return Some((value.to_string(), rest));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &quoted[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

/// A user name and password for a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

/// Registry credentials from image pull secrets, found by registry and repository the way the
/// kubelet's keyring finds them.
#[derive(Clone, Debug, Default)]
pub struct Keychain {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    /// The host, possibly with `*` standing for whole DNS labels.
    host: String,
    port: Option<String>,
    /// A repository prefix (`team/app`), or empty for the whole registry.
    path: String,
    credential: Credential,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl AuthEntry {
    /// `username` and `password`, else the `auth` field's base64 `user:password`.
    fn credential(&self) -> Option<Credential> {
        if let (Some(username), Some(password)) = (&self.username, &self.password) {
            return Some(Credential {
                username: username.clone(),
                password: password.clone(),
            });
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.as_deref()?.trim())
            .ok()?;
        let (username, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some(Credential {
            username: username.to_string(),
            password: password.to_string(),
        })
    }
}

impl Keychain {
    /// Adds the registries of a `.dockerconfigjson` (`{"auths": {REGISTRY: …}}`) or, with
    /// `legacy`, of a `.dockercfg` (the map itself). Returns false when `json` is neither.
    pub fn add(&mut self, json: &[u8], legacy: bool) -> bool {
        let auths = if legacy {
            serde_json::from_slice::<HashMap<String, AuthEntry>>(json).ok()
        } else {
            serde_json::from_slice::<ConfigJson>(json)
                .ok()
                .map(|c| c.auths)
        };
        let Some(auths) = auths else {
            return false;
        };
        for (key, entry) in auths {
            if let (Some(credential), Some((host, port, path))) =
                (entry.credential(), key_parts(&key))
            {
                self.entries.push(Entry {
                    host,
                    port,
                    path,
                    credential,
                });
            }
        }
        // The most specific keys first, as the kubelet sorts them.
        self.entries.sort_by_key(|e| {
            std::cmp::Reverse(e.host.len() + e.port.as_ref().map_or(0, String::len) + e.path.len())
        });
        true
    }

    /// The credential for `repository` on `registry` (`host[:port]`, as in image references).
    pub fn find(&self, registry: &str, repository: &str) -> Option<&Credential> {
        let (host, port) = split_port(registry);
        let host = hub(host);
        self.entries
            .iter()
            .find(|e| {
                e.port.as_deref() == port
                    && glob_host(&e.host, &host)
                    && (e.path.is_empty()
                        || repository == e.path
                        || repository.starts_with(&format!("{}/", e.path)))
            })
            .map(|e| &e.credential)
    }
}

/// A config key (`https://index.docker.io/v1/`, `registry:5000`, `*.example.com/team`) as a
/// host, port and repository prefix; `/v1/` and `/v2/` in front of the path mean nothing.
fn key_parts(key: &str) -> Option<(String, Option<String>, String)> {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (authority, path) = key.split_once('/').unwrap_or((key, ""));
    if authority.is_empty() {
        return None;
    }
    let path = path.trim_matches('/');
    let path = ["v1", "v2"]
        .iter()
        .find_map(|v| {
            path.strip_prefix(v)
                .filter(|p| p.is_empty() || p.starts_with('/'))
        })
        .unwrap_or(path)
        .trim_matches('/');
    let (host, port) = split_port(authority);
    Some((hub(host), port.map(str::to_string), path.to_string()))
}

/// `host[:port]` split; a bracketed IPv6 address keeps its brackets.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            (host, Some(port))
        }
        _ => (authority, None),
    }
}

/// Docker Hub's names all mean one registry.
fn hub(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// Whether `host` matches `pattern`, where a `*` label matches any one label.
fn glob_host(pattern: &str, host: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let host: Vec<&str> = host.split('.').collect();
    pattern.len() == host.len() && pattern.iter().zip(&host).all(|(p, h)| *p == "*" || p == h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_keep_quoted_commas() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#;
        let challenges = Challenge::parse(header);
        assert_eq!(challenges.len(), 1);
        let c = &challenges[0];
        assert!(c.is("bearer"));
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(
            c.param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
    }

    #[test]
    fn several_challenges_tokens_and_escapes() {
        let header = r#"Basic realm="a \"quoted\" realm", Bearer realm=https://r/token , error=insufficient_scope"#;
        let challenges = Challenge::parse(header);
        assert_eq!(challenges.len(), 2);
        assert!(challenges[0].is("Basic"));
        assert_eq!(challenges[0].param("realm"), Some("a \"quoted\" realm"));
        assert!(challenges[1].is("Bearer"));
        assert_eq!(challenges[1].param("realm"), Some("https://r/token"));
        assert_eq!(challenges[1].param("error"), Some("insufficient_scope"));
        assert!(Challenge::parse("").is_empty());
        assert_eq!(Challenge::parse(r#"Bearer realm="unterminated"#).len(), 1);
    }

    fn auth(user: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    }

    fn credential(user: &str, password: &str) -> Credential {
        Credential {
            username: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn dockerconfigjson_is_matched_by_host_port_and_path() {
        let json = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": auth("hub", "h")},
            "registry.example.com:5000": {"username": "port", "password": "p"},
            "registry.example.com": {"auth": auth("plain", "x:y")},
            "registry.example.com/team": {"auth": auth("team", "t")},
            "*.corp.example": {"auth": auth("glob", "g")},
            "broken.example": {"auth": "not base64!"},
        }});
        let mut keychain = Keychain::default();
        assert!(keychain.add(json.to_string().as_bytes(), false));
        assert_eq!(
            keychain.find("docker.io", "library/busybox"),
            Some(&credential("hub", "h"))
        );
        assert_eq!(
            keychain.find("registry.example.com:5000", "team/app"),
            Some(&credential("port", "p"))
        );
        assert_eq!(
            keychain.find("registry.example.com", "team/app"),
            Some(&credential("team", "t"))
        );
        assert_eq!(
            keychain.find("registry.example.com", "teams/app"),
            Some(&credential("plain", "x:y"))
        );
        assert_eq!(keychain.find("registry.example.com:443", "x"), None);
        assert_eq!(
            keychain.find("a.corp.example", "x"),
            Some(&credential("glob", "g"))
        );
        assert_eq!(keychain.find("a.b.corp.example", "x"), None);
        assert_eq!(keychain.find("broken.example", "x"), None);
        assert_eq!(keychain.find("quay.io", "x"), None);
    }

    #[test]
    fn legacy_dockercfg_is_the_map_itself() {
        let json = serde_json::json!({"127.0.0.1:5000": {"auth": auth("me", "pw")}});
        let mut keychain = Keychain::default();
        assert!(!keychain.add(b"[1, 2]", true));
        assert!(keychain.add(json.to_string().as_bytes(), true));
        assert_eq!(
            keychain.find("127.0.0.1:5000", "demo/x"),
            Some(&credential("me", "pw"))
        );
        assert_eq!(keychain.find("127.0.0.1", "demo/x"), None);
    }

    #[test]
    fn ports_of_bracketed_ipv6_hosts() {
        assert_eq!(split_port("[::1]:5000"), ("[::1]", Some("5000")));
        assert_eq!(split_port("[::1]"), ("[::1]", None));
        assert_eq!(split_port("example.com"), ("example.com", None));
    }
}
