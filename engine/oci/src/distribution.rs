//! A small client of the distribution (registry v2) API for what a cleanup needs: list a
//! repository's tags with the manifest digest each points to and the image's creation time,
//! and delete a manifest by digest.
//!
//! It is blocking (ureq), like the registry cache store; the host calls it on a blocking
//! thread. Authentication: anonymous, HTTP Basic (distribution's htpasswd) and Bearer tokens
//! from the token service named in the `WWW-Authenticate` challenge. Loopback registries are
//! reached over plain HTTP, others over HTTPS (certificates verified).

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::{Reference, RegistryAuth};

/// Media types a tag may point to, in the `Accept` header of manifest requests.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest or config read into memory.
const MAX_SMALL: u64 = 4 << 20;
/// Most tags listed (pages of 1000).
const MAX_PAGES: usize = 100;

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum DistributionError {
    #[error("invalid repository `{0}`: {1}")]
    Invalid(String, String),
    #[error("registry `{registry}`: {message}")]
    Auth { registry: String, message: String },
    #[error("registry `{registry}` cannot be reached: {message}")]
    Unreachable { registry: String, message: String },
    #[error(
        "registry `{registry}` does not allow deletes\n  hint: enable them (distribution: `storage.delete.enabled: true`)"
    )]
    DeleteDisabled { registry: String },
    #[error("registry `{registry}`: {message}")]
    Failed { registry: String, message: String },
}

/// One tag of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    pub tag: String,
    /// `sha256:…` of the manifest the tag points to.
    pub digest: String,
    /// The image config's `created` (RFC 3339), when the manifest is a single image's.
    pub created: Option<String>,
}

enum Scheme {
    Unknown,
    Basic,
    Bearer(String),
}

/// A repository in a registry.
pub struct Repository {
    agent: ureq::Agent,
    base: String,
    registry: String,
    repository: String,
    auth: RegistryAuth,
    scheme: Mutex<Scheme>,
}

/// Whether `host[:port]` is a loopback address (where plain HTTP is allowed).
pub fn is_loopback(host: &str) -> bool {
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `s` percent-encoded for a URL query (RFC 3986 unreserved characters kept).
pub fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The scheme and parameters of a `WWW-Authenticate` challenge.
pub fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        params.push((name.trim().to_ascii_lowercase(), value));
    }
    (scheme.to_ascii_lowercase(), params)
}

type Response = ureq::http::Response<ureq::Body>;

/// The next page of a paginated list: the target of the response's `Link` header.
pub fn next_link<B>(response: &ureq::http::Response<B>) -> Option<String> {
    response
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.split(';').next())
        .map(|l| {
            l.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
}

impl Repository {
    /// `repository` is `host[:port]/path`, without a tag or digest.
    pub fn new(repository: &str, auth: RegistryAuth) -> Result<Repository, DistributionError> {
        let bad = |why: &str| DistributionError::Invalid(repository.to_owned(), why.to_owned());
        let reference = Reference::parse(repository).map_err(|e| bad(&e.to_string()))?;
        if reference.tag().is_some() || reference.digest().is_some() {
            return Err(bad(
                "name a repository without a tag or digest, e.g. `registry.example.com/team/app`",
            ));
        }
        let host = reference.api_host().to_owned();
        let scheme = if is_loopback(&host) { "http" } else { "https" };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .max_redirects(0)
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Repository {
            agent: ureq::Agent::new_with_config(config),
            base: format!("{scheme}://{host}"),
            registry: reference.registry().to_owned(),
            repository: reference.repository().to_owned(),
            auth,
            scheme: Mutex::new(Scheme::Unknown),
        })
    }

    fn failed(&self, message: impl Into<String>) -> DistributionError {
        DistributionError::Failed {
            registry: self.registry.clone(),
            message: message.into(),
        }
    }

    fn auth_error(&self, message: impl Into<String>) -> DistributionError {
        DistributionError::Auth {
            registry: self.registry.clone(),
            message: message.into(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    fn basic(&self) -> Option<String> {
        match &self.auth {
            RegistryAuth::Basic(c) => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", c.username, c.password))
            )),
            _ => None,
        }
    }

    fn authorization(&self) -> Option<String> {
        let scheme = self
            .scheme
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*scheme {
            Scheme::Unknown => None,
            Scheme::Basic => self.basic(),
            Scheme::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }

    /// Answer a 401 challenge; false when there is nothing more to try.
    fn authenticate(&self, challenge: Option<&str>) -> Result<bool, DistributionError> {
        let Some(challenge) = challenge else {
            return Ok(false);
        };
        let (scheme, params) = parse_challenge(challenge);
        let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut state = self
            .scheme
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match scheme.as_str() {
            "basic" => {
                if self.basic().is_none() {
                    return Err(self.auth_error(
                        "the registry asks for credentials\n  hint: give `auth: { username, password }` with the password in a secret",
                    ));
                }
                if matches!(*state, Scheme::Basic) {
                    return Ok(false);
                }
                *state = Scheme::Basic;
                Ok(true)
            }
            "bearer" => {
                if matches!(*state, Scheme::Bearer(_)) {
                    return Ok(false);
                }
                let realm = get("realm")
                    .ok_or_else(|| self.failed("a Bearer challenge without a realm"))?;
                let scope = get("scope")
                    .unwrap_or_else(|| format!("repository:{}:pull,delete", self.repository));
                let mut query = format!("scope={}", percent(&scope));
                if let Some(s) = get("service") {
                    query.push_str(&format!("&service={}", percent(&s)));
                }
                let sep = if realm.contains('?') { '&' } else { '?' };
                let mut req = self.agent.get(format!("{realm}{sep}{query}"));
                if let Some(b) = self.basic() {
                    req = req.header("Authorization", b);
                }
                let mut response = req.call().map_err(|e| DistributionError::Unreachable {
                    registry: self.registry.clone(),
                    message: format!("the token service: {e}"),
                })?;
                if !response.status().is_success() {
                    return Err(self.auth_error(format!(
                        "the token service refused the credentials ({})",
                        response.status()
                    )));
                }
                let body: Value = serde_json::from_slice(&self.small_body(&mut response)?)
                    .map_err(|e| self.failed(format!("the token service answered garbage: {e}")))?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| self.failed("the token service sent no token"))?;
                *state = Scheme::Bearer(token.to_owned());
                Ok(true)
            }
            other => Err(self.failed(format!("unsupported authentication scheme `{other}`"))),
        }
    }

    fn send(&self, method: &str, url: &str, accept: bool) -> Result<Response, DistributionError> {
        for _ in 0..3 {
            let mut req = ureq::http::Request::builder().method(method).uri(url);
            if accept {
                req = req.header("Accept", MANIFEST_TYPES);
            }
            if let Some(a) = self.authorization() {
                req = req.header("Authorization", a);
            }
            let req = req
                .header("Content-Length", "0")
                .body(())
                .map_err(|e| self.failed(e.to_string()))?;
            let response = self
                .agent
                .run(req)
                .map_err(|e| DistributionError::Unreachable {
                    registry: self.registry.clone(),
                    message: format!("{method} {url}: {e}"),
                })?;
            match response.status().as_u16() {
                401 => {
                    let challenge = response
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    if self.authenticate(challenge.as_deref())? {
                        continue;
                    }
                    return Err(self.auth_error("the registry refused the credentials (401)"));
                }
                403 => return Err(self.auth_error(format!("{method} {url}: access denied (403)"))),
                _ => return Ok(response),
            }
        }
        Err(self.auth_error("authentication did not settle after three tries"))
    }

    fn small_body(&self, response: &mut Response) -> Result<Vec<u8>, DistributionError> {
        response
            .body_mut()
            .with_config()
            .limit(MAX_SMALL)
            .read_to_vec()
            .map_err(|e| self.failed(format!("cannot read the answer: {e}")))
    }

    fn unexpected(&self, what: &str, response: &mut Response) -> DistributionError {
        let status = response.status();
        let body = self.small_body(response).unwrap_or_default();
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        self.failed(format!(
            "{what}: unexpected answer {status}: {}",
            text.trim()
        ))
    }

    /// Every tag of the repository, sorted by name (none when the repository does not exist).
    pub fn tag_names(&self) -> Result<Vec<String>, DistributionError> {
        let mut out = Vec::new();
        let mut url = self.url("tags/list?n=1000");
        for _ in 0..MAX_PAGES {
            let mut response = self.send("GET", &url, false)?;
            if response.status() == 404 {
                return Ok(out);
            }
            if !response.status().is_success() {
                return Err(self.unexpected("listing tags", &mut response));
            }
            let next = next_link(&response);
            let page: Value = serde_json::from_slice(&self.small_body(&mut response)?)
                .map_err(|e| self.failed(format!("the tag list is not valid JSON: {e}")))?;
            if let Some(tags) = page.get("tags").and_then(Value::as_array) {
                out.extend(tags.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            match next {
                Some(n) if n.starts_with('/') => url = format!("{}{n}", self.base),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }

    /// The tag's manifest digest and, for a single image, its config's `created`.
    pub fn describe(&self, tag: &str) -> Result<Option<TagInfo>, DistributionError> {
        let mut response = self.send("GET", &self.url(&format!("manifests/{tag}")), true)?;
        if response.status() == 404 {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.unexpected(&format!("reading tag `{tag}`"), &mut response));
        }
        let header = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = self.small_body(&mut response)?;
        let digest =
            header.unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(&bytes))));
        let manifest: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.failed(format!("the manifest of `{tag}` is not JSON: {e}")))?;
        let created = match manifest.pointer("/config/digest").and_then(Value::as_str) {
            Some(config) => {
                let mut response =
                    self.send("GET", &self.url(&format!("blobs/{config}")), false)?;
                if response.status().is_success() {
                    let config: Value = serde_json::from_slice(&self.small_body(&mut response)?)
                        .unwrap_or_default();
                    config
                        .get("created")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                } else {
                    None
                }
            }
            None => None,
        };
        Ok(Some(TagInfo {
            tag: tag.to_owned(),
            digest,
            created,
        }))
    }

    /// Every tag with its digest and creation time, sorted by name.
    pub fn tags(&self) -> Result<Vec<TagInfo>, DistributionError> {
        let mut out = Vec::new();
        for tag in self.tag_names()? {
            // A tag deleted between the list and the read is simply gone.
            if let Some(info) = self.describe(&tag)? {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Delete the manifest `digest` (and so every tag pointing to it); false when it was not
    /// there.
    pub fn delete(&self, digest: &str) -> Result<bool, DistributionError> {
        let valid = digest
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !valid {
            return Err(DistributionError::Invalid(
                digest.to_owned(),
                "not a manifest digest; give `sha256:` and 64 hex digits".to_owned(),
            ));
        }
        let mut response = self.send("DELETE", &self.url(&format!("manifests/{digest}")), false)?;
        match response.status().as_u16() {
            200 | 202 => Ok(true),
            404 => Ok(false),
            405 => Err(DistributionError::DeleteDisabled {
                registry: self.registry.clone(),
            }),
            _ => Err(self.unexpected("deleting a manifest", &mut response)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_with_a_tag_is_refused_and_loopback_is_plain_http() {
        assert!(Repository::new("127.0.0.1:5000/team/app:v1", RegistryAuth::Anonymous).is_err());
        let r = Repository::new("127.0.0.1:5000/team/app", RegistryAuth::Anonymous).unwrap();
        assert_eq!(r.base, "http://127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        let r = Repository::new("registry.example.com/team/app", RegistryAuth::Anonymous).unwrap();
        assert_eq!(r.base, "https://registry.example.com");
    }

    #[test]
    fn a_digest_to_delete_must_be_a_full_sha256() {
        let r = Repository::new("127.0.0.1:1/app", RegistryAuth::Anonymous).unwrap();
        let e = r.delete("latest").unwrap_err().to_string();
        assert!(e.contains("`latest`"), "{e}");
    }
}
