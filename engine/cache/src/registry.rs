//! The registry store: cache entries as OCI artifacts in one repository of a registry, so that
//! several machines share a cache.
//!
//! An entry is an OCI image manifest (`artifactType` [`MANIFEST_MEDIA_TYPE`]) whose config blob
//! is the entry's manifest exactly as the local store keeps it (key, time, metadata, archive
//! descriptor) and whose one layer is the archive (or the OCI empty blob when the entry has
//! none). Its tag is `<32 hex of sha256(key)>-<the first 80 characters of the key, characters
//! outside [A-Za-z0-9_.-] written `_`>`: exact lookups go straight to the tag, prefix lookups
//! list the tags, keep those whose readable part can match, and read their annotations
//! (`dev.kiln.cache.key`, `dev.kiln.cache.created-ms`).
//!
//! Everything downloaded is checked against its digest on the way into the local store; an
//! entry is only used from there. The client speaks the distribution API directly (ureq):
//! anonymous, HTTP Basic (distribution's htpasswd), and Bearer tokens (the token service named
//! in the `WWW-Authenticate` challenge, with the Basic credentials or an identity token).
//! Loopback registries are reached over plain HTTP, others over HTTPS, unless the location
//! starts with `http://` or `https://`.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kiln_oci::distribution::{is_loopback, next_link, parse_challenge, percent};
use kiln_oci::{Reference, RegistryAuth};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::local::{ARCHIVE_MEDIA_TYPE, Entry, LocalStore, MANIFEST_MEDIA_TYPE, Manifest};
use crate::{CacheError, Digest};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const KEY_ANNOTATION: &str = "dev.kiln.cache.key";
const CREATED_ANNOTATION: &str = "dev.kiln.cache.created-ms";
/// Characters of the key kept readable in a tag.
const TAG_KEY_CHARS: usize = 80;
const TAG_HASH_CHARS: usize = 32;
/// Largest manifest or config blob read into memory.
const MAX_SMALL: u64 = 4 << 20;

/// An entry as the registry lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteListed {
    pub key: String,
    pub created_ms: u64,
    /// Bytes of the config blob and the layer.
    pub size: u64,
    pub tag: String,
}

#[derive(Debug, Clone)]
enum Scheme {
    /// No credentials asked for yet.
    Unknown,
    Basic,
    Bearer,
}

struct AuthState {
    scheme: Scheme,
    token: Option<String>,
}

/// A cache repository in an OCI registry.
pub struct RegistryStore {
    agent: ureq::Agent,
    base: String,
    registry: String,
    repository: String,
    auth: RegistryAuth,
    state: Mutex<AuthState>,
}

impl std::fmt::Debug for RegistryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryStore")
            .field("base", &self.base)
            .field("repository", &self.repository)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct OciManifest {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

/// The tag an entry with `key` is stored under.
pub fn tag_for(key: &str) -> String {
    let hash = Digest::of(key.as_bytes()).hex();
    format!("{}-{}", &hash[..TAG_HASH_CHARS], readable(key))
}

fn readable(key: &str) -> String {
    key.chars()
        .take(TAG_KEY_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether an entry whose tag is `tag` may have a key starting with `prefix`.
fn tag_may_match(tag: &str, prefix: &str) -> bool {
    let Some(part) = tag.get(TAG_HASH_CHARS + 1..) else {
        return false;
    };
    part.starts_with(&readable(prefix))
}

/// A request body that can be produced again (after an authentication round trip).
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    File(&'a std::path::Path, u64),
}

impl RegistryStore {
    /// `location` is `host[:port]/repository` (optionally `http://` or `https://` first).
    pub fn new(location: &str, auth: RegistryAuth) -> Result<RegistryStore, CacheError> {
        let bad = |why: String| CacheError::Location(location.to_owned(), why);
        let (forced, rest) = if let Some(r) = location.strip_prefix("http://") {
            (Some("http"), r)
        } else if let Some(r) = location.strip_prefix("https://") {
            (Some("https"), r)
        } else {
            (None, location)
        };
        let reference = Reference::parse(rest).map_err(|e| bad(e.to_string()))?;
        if reference.tag().is_some() || reference.digest().is_some() {
            return Err(bad(
                "name a repository without a tag or digest, e.g. `registry.example.com/team/kiln-cache`".into(),
            ));
        }
        let host = reference.api_host().to_owned();
        let scheme = forced.unwrap_or(if is_loopback(&host) { "http" } else { "https" });
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .max_redirects(5)
            .user_agent(concat!("kiln-cache/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(RegistryStore {
            agent: ureq::Agent::new_with_config(config),
            base: format!("{scheme}://{host}"),
            registry: reference.registry().to_owned(),
            repository: reference.repository().to_owned(),
            auth,
            state: Mutex::new(AuthState {
                scheme: Scheme::Unknown,
                token: None,
            }),
        })
    }

    /// `registry/repository`, for messages.
    pub fn location(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    fn err(&self, message: impl Into<String>) -> CacheError {
        CacheError::Registry {
            location: self.location(),
            message: message.into(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn basic_header(&self) -> Option<String> {
        match &self.auth {
            RegistryAuth::Basic(c) => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", c.username, c.password))
            )),
            _ => None,
        }
    }

    fn authorization(&self) -> Option<String> {
        let state = self.state();
        match &state.scheme {
            Scheme::Unknown => None,
            Scheme::Basic => self.basic_header(),
            Scheme::Bearer => state.token.as_ref().map(|t| format!("Bearer {t}")),
        }
    }

    /// Answer a 401: remember the scheme, fetch a token if it is Bearer. False when there is
    /// nothing more to try.
    fn authenticate(&self, challenge: Option<&str>) -> Result<bool, CacheError> {
        let Some(challenge) = challenge else {
            return Ok(false);
        };
        let (scheme, params) = parse_challenge(challenge);
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        match scheme.as_str() {
            "basic" => {
                if self.basic_header().is_none() {
                    return Err(self.err(
                        "the registry asks for credentials; add them to the Docker config (`docker login`)",
                    ));
                }
                let mut state = self.state();
                if matches!(state.scheme, Scheme::Basic) {
                    return Ok(false);
                }
                state.scheme = Scheme::Basic;
                Ok(true)
            }
            "bearer" => {
                let realm =
                    get("realm").ok_or_else(|| self.err("a Bearer challenge without a realm"))?;
                let service = get("service");
                let scope = get("scope")
                    .unwrap_or_else(|| format!("repository:{}:pull,push", self.repository));
                let had_token = self.state().token.is_some();
                if had_token && get("error").is_none() {
                    return Ok(false);
                }
                let token = self.fetch_token(&realm, service.as_deref(), &scope)?;
                let mut state = self.state();
                state.scheme = Scheme::Bearer;
                state.token = Some(token);
                Ok(!had_token)
            }
            other => Err(self.err(format!("unsupported authentication scheme `{other}`"))),
        }
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, CacheError> {
        let mut query = format!("scope={}", percent(scope));
        if let Some(s) = service {
            query.push_str(&format!("&service={}", percent(s)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let response = match &self.auth {
            RegistryAuth::IdentityToken(refresh) => {
                let mut form = format!(
                    "grant_type=refresh_token&client_id=kiln&refresh_token={}&scope={}",
                    percent(refresh),
                    percent(scope)
                );
                if let Some(s) = service {
                    form.push_str(&format!("&service={}", percent(s)));
                }
                self.agent
                    .post(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .send(form.as_bytes())
            }
            _ => {
                let mut req = self.agent.get(format!("{realm}{sep}{query}"));
                if let Some(b) = self.basic_header() {
                    req = req.header("Authorization", b);
                }
                req.call()
            }
        };
        let mut response =
            response.map_err(|e| self.err(format!("cannot reach the token service: {e}")))?;
        if !response.status().is_success() {
            return Err(self.err(format!(
                "the token service refused the credentials ({})",
                response.status()
            )));
        }
        let bytes = self.small_body(&mut response)?;
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(format!("the token service answered garbage: {e}")))?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| self.err("the token service sent no token"))
    }

    /// Send a request, answering authentication challenges.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &Body<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>, CacheError> {
        for _ in 0..3 {
            let mut req = ureq::http::Request::builder().method(method).uri(url);
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            if let Some(a) = self.authorization() {
                req = req.header("Authorization", a);
            }
            let response = match body {
                Body::Empty => {
                    let req = req
                        .header("Content-Length", "0")
                        .body(())
                        .map_err(|e| self.err(e.to_string()))?;
                    self.agent.run(req)
                }
                Body::Bytes(b) => {
                    let req = req
                        .header("Content-Length", b.len().to_string())
                        .body(*b)
                        .map_err(|e| self.err(e.to_string()))?;
                    self.agent.run(req)
                }
                Body::File(path, len) => {
                    let file = std::fs::File::open(path).map_err(|e| {
                        CacheError::Io(format!("cannot open `{}`: {e}", path.display()))
                    })?;
                    let reader = std::io::BufReader::with_capacity(1 << 20, file);
                    let req = req
                        .header("Content-Length", len.to_string())
                        .body(ureq::SendBody::from_owned_reader(reader))
                        .map_err(|e| self.err(e.to_string()))?;
                    self.agent.run(req)
                }
            };
            let response = response.map_err(|e| {
                self.err(format!(
                    "{method} {url}: {e} (is the registry running and reachable?)"
                ))
            })?;
            if response.status() == 401 {
                let challenge = response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if self.authenticate(challenge.as_deref())? {
                    continue;
                }
                return Err(self.err("the registry refused the credentials (401)"));
            }
            if response.status() == 403 {
                return Err(self.err(format!("{method} {url}: access denied (403)")));
            }
            return Ok(response);
        }
        Err(self.err("authentication did not settle after three tries"))
    }

    fn small_body(
        &self,
        response: &mut ureq::http::Response<ureq::Body>,
    ) -> Result<Vec<u8>, CacheError> {
        response
            .body_mut()
            .with_config()
            .limit(MAX_SMALL)
            .read_to_vec()
            .map_err(|e| self.err(format!("cannot read the answer: {e}")))
    }

    fn unexpected(
        &self,
        what: &str,
        response: &mut ureq::http::Response<ureq::Body>,
    ) -> CacheError {
        let status = response.status();
        let body = self.small_body(response).unwrap_or_default();
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        self.err(format!(
            "{what}: unexpected answer {status}: {}",
            text.trim()
        ))
    }

    /// The OCI manifest tagged `tag`, with its digest; `None` when there is none.
    fn manifest(&self, tag: &str) -> Result<Option<(OciManifest, Vec<u8>)>, CacheError> {
        let mut response = self.send(
            "GET",
            &self.url(&format!("manifests/{tag}")),
            &[("Accept", OCI_MANIFEST.to_owned())],
            &Body::Empty,
        )?;
        if response.status() == 404 {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.unexpected("reading a manifest", &mut response));
        }
        let bytes = self.small_body(&mut response)?;
        let manifest: OciManifest = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(format!("manifest `{tag}` is not valid: {e}")))?;
        Ok(Some((manifest, bytes)))
    }

    fn blob_get(&self, digest: &str) -> Result<ureq::http::Response<ureq::Body>, CacheError> {
        let mut response = self.send(
            "GET",
            &self.url(&format!("blobs/{digest}")),
            &[],
            &Body::Empty,
        )?;
        if !response.status().is_success() {
            return Err(self.unexpected(&format!("reading blob {digest}"), &mut response));
        }
        Ok(response)
    }

    /// Download the entry `manifest` describes into `local`, verified; `None` if its key is
    /// not `key` (a tag collision or a foreign artifact).
    fn download(
        &self,
        key_ok: &dyn Fn(&str) -> bool,
        manifest: &OciManifest,
        local: &LocalStore,
    ) -> Result<Option<Entry>, CacheError> {
        let Some(config) = &manifest.config else {
            return Ok(None);
        };
        if config.media_type != MANIFEST_MEDIA_TYPE || config.size > MAX_SMALL {
            return Ok(None);
        }
        let expected: Digest = config
            .digest
            .parse()
            .map_err(|e: crate::digest::BadDigest| self.err(e.to_string()))?;
        let mut response = self.blob_get(&config.digest)?;
        let bytes = self.small_body(&mut response)?;
        if Digest::of(&bytes) != expected {
            return Err(CacheError::Corrupt(format!(
                "the registry's blob {expected} does not match its digest"
            )));
        }
        let entry: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| CacheError::Corrupt(format!("the entry's manifest is not valid: {e}")))?;
        if !key_ok(&entry.key) {
            return Ok(None);
        }
        if let Some(a) = &entry.archive
            && !local.blob_path(&a.digest).exists()
        {
            let response = self.blob_get(&a.digest.to_string())?;
            let mut reader = response.into_body().into_reader();
            local.put_verified(&mut reader as &mut dyn Read, &a.digest, a.size)?;
        }
        local.import(&bytes).map(Some)
    }

    /// Fetch the entry saved under exactly `key` into `local`.
    pub fn fetch(&self, key: &str, local: &LocalStore) -> Result<Option<Entry>, CacheError> {
        match self.manifest(&tag_for(key))? {
            Some((m, _)) => self.download(&|k| k == key, &m, local),
            None => Ok(None),
        }
    }

    /// Every tag of the repository.
    fn tags(&self) -> Result<Vec<String>, CacheError> {
        let mut out = Vec::new();
        let mut url = self.url("tags/list?n=1000");
        for _ in 0..1000 {
            let mut response = self.send("GET", &url, &[], &Body::Empty)?;
            if response.status() == 404 {
                return Ok(out);
            }
            if !response.status().is_success() {
                return Err(self.unexpected("listing tags", &mut response));
            }
            let next = next_link(&response);
            let bytes = self.small_body(&mut response)?;
            let page: Value = serde_json::from_slice(&bytes)
                .map_err(|e| self.err(format!("the tag list is not valid: {e}")))?;
            if let Some(tags) = page.get("tags").and_then(Value::as_array) {
                out.extend(tags.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            match next {
                Some(n) if n.starts_with('/') => url = format!("{}{n}", self.base),
                Some(n) if n.starts_with("http") => url = n,
                _ => break,
            }
        }
        Ok(out)
    }

    /// Entries whose key may start with `prefix` (all for ""), from their annotations.
    fn candidates(&self, prefix: &str) -> Result<Vec<(RemoteListed, OciManifest)>, CacheError> {
        let mut out = Vec::new();
        for tag in self.tags()? {
            if !tag_may_match(&tag, prefix) {
                continue;
            }
            let Some((m, _)) = self.manifest(&tag)? else {
                continue;
            };
            let Some(key) = m.annotations.get(KEY_ANNOTATION).cloned() else {
                continue;
            };
            if !key.starts_with(prefix) || tag_for(&key) != tag {
                continue;
            }
            let created_ms = m
                .annotations
                .get(CREATED_ANNOTATION)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let size = m.config.as_ref().map_or(0, |c| c.size)
                + m.layers.iter().map(|l| l.size).sum::<u64>();
            out.push((
                RemoteListed {
                    key,
                    created_ms,
                    size,
                    tag,
                },
                m,
            ));
        }
        out.sort_by(|a, b| {
            b.0.created_ms
                .cmp(&a.0.created_ms)
                .then(a.0.key.cmp(&b.0.key))
        });
        Ok(out)
    }

    /// Fetch the newest entry whose key starts with `prefix` into `local`.
    pub fn fetch_prefix(
        &self,
        prefix: &str,
        local: &LocalStore,
    ) -> Result<Option<Entry>, CacheError> {
        for (listed, m) in self.candidates(prefix)? {
            let want = listed.key.clone();
            if let Some(e) = self.download(&|k| k == want, &m, local)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// The newest entry whose key starts with `prefix`, without downloading it.
    pub fn newest(&self, prefix: &str) -> Result<Option<RemoteListed>, CacheError> {
        Ok(self.candidates(prefix)?.into_iter().next().map(|(l, _)| l))
    }

    /// Every entry in the repository, newest first.
    pub fn list(&self) -> Result<Vec<RemoteListed>, CacheError> {
        Ok(self.candidates("")?.into_iter().map(|(l, _)| l).collect())
    }

    fn blob_exists(&self, digest: &Digest) -> Result<bool, CacheError> {
        let response = self.send(
            "HEAD",
            &self.url(&format!("blobs/{digest}")),
            &[],
            &Body::Empty,
        )?;
        Ok(response.status().is_success())
    }

    fn upload(&self, digest: &Digest, body: Body<'_>) -> Result<(), CacheError> {
        if self.blob_exists(digest)? {
            return Ok(());
        }
        let mut response = self.send("POST", &self.url("blobs/uploads/"), &[], &Body::Empty)?;
        if response.status() != 202 {
            return Err(self.unexpected("starting an upload", &mut response));
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.err("the registry gave no upload location"))?
            .to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", percent(&digest.to_string()));
        let mut response = self.send(
            "PUT",
            &url,
            &[("Content-Type", "application/octet-stream".to_owned())],
            &body,
        )?;
        if response.status() != 201 {
            return Err(self.unexpected(&format!("uploading blob {digest}"), &mut response));
        }
        Ok(())
    }

    /// Push `entry` (which must be in `local`) to the registry.
    pub fn publish(&self, entry: &Entry, local: &LocalStore) -> Result<(), CacheError> {
        let config_path = local.blob_path(&entry.manifest_digest);
        let config_bytes = std::fs::read(&config_path)
            .map_err(|e| CacheError::Io(format!("cannot read `{}`: {e}", config_path.display())))?;
        self.upload(&entry.manifest_digest, Body::Bytes(&config_bytes))?;
        let layer = match &entry.manifest.archive {
            Some(a) => {
                self.upload(&a.digest, Body::File(&local.blob_path(&a.digest), a.size))?;
                json!({ "mediaType": ARCHIVE_MEDIA_TYPE, "digest": a.digest.to_string(), "size": a.size })
            }
            None => {
                let empty = b"{}";
                let d = Digest::of(empty);
                self.upload(&d, Body::Bytes(empty))?;
                json!({ "mediaType": OCI_EMPTY, "digest": d.to_string(), "size": 2 })
            }
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": entry.manifest_digest.to_string(),
                "size": config_bytes.len(),
            },
            "layers": [layer],
            "annotations": {
                KEY_ANNOTATION: entry.manifest.key,
                CREATED_ANNOTATION: entry.manifest.created_ms.to_string(),
            }
        });
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| self.err(format!("cannot encode the manifest: {e}")))?;
        let mut response = self.send(
            "PUT",
            &self.url(&format!("manifests/{}", tag_for(&entry.manifest.key))),
            &[("Content-Type", OCI_MANIFEST.to_owned())],
            &Body::Bytes(&bytes),
        )?;
        if response.status() != 201 {
            return Err(self.unexpected("pushing the manifest", &mut response));
        }
        Ok(())
    }

    /// Delete the entry saved under `key`; false when there was none.
    pub fn remove(&self, key: &str) -> Result<bool, CacheError> {
        let tag = tag_for(key);
        let mut response = self.send(
            "HEAD",
            &self.url(&format!("manifests/{tag}")),
            &[("Accept", OCI_MANIFEST.to_owned())],
            &Body::Empty,
        )?;
        if response.status() == 404 {
            return Ok(false);
        }
        if !response.status().is_success() {
            return Err(self.unexpected("finding a manifest", &mut response));
        }
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let digest = match digest {
            Some(d) => d,
            None => match self.manifest(&tag)? {
                Some((_, bytes)) => Digest::of(&bytes).to_string(),
                None => return Ok(false),
            },
        };
        let mut response = self.send(
            "DELETE",
            &self.url(&format!("manifests/{digest}")),
            &[],
            &Body::Empty,
        )?;
        match response.status().as_u16() {
            202 | 200 => Ok(true),
            404 => Ok(false),
            405 => Err(self.err(
                "the registry does not allow deletes (distribution: `storage.delete.enabled: true`)",
            )),
            _ => Err(self.unexpected("deleting a manifest", &mut response)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_valid_keep_the_key_readable_and_match_prefixes() {
        let key = "user/0123/npm-linux-x64-3f2a+lock";
        let tag = tag_for(key);
        assert!(tag.len() <= 128);
        assert!(
            tag.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        );
        assert!(tag.ends_with("-user_0123_npm-linux-x64-3f2a_lock"), "{tag}");
        assert!(tag_may_match(&tag, "user/0123/npm-"));
        assert!(tag_may_match(&tag, ""));
        assert!(!tag_may_match(&tag, "user/0123/pip-"));
        let long = "k".repeat(500);
        assert_eq!(tag_for(&long).len(), TAG_HASH_CHARS + 1 + TAG_KEY_CHARS);
        assert!(tag_may_match(&tag_for(&long), &"k".repeat(300)));
        assert_ne!(tag_for("a b"), tag_for("a_b"), "the hash tells them apart");
    }

    #[test]
    fn challenges_are_parsed_with_quoted_values() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/cache:pull,push""#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(
            params[0],
            ("realm".into(), "https://auth.example.com/token".into())
        );
        assert_eq!(params[1].1, "registry.example.com");
        assert_eq!(params[2].1, "repository:team/cache:pull,push");
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(scheme, "basic");
        assert_eq!(params, [("realm".to_owned(), "Registry Realm".to_owned())]);
    }

    #[test]
    fn locations_choose_plain_http_only_for_loopback() {
        let s = |l: &str| RegistryStore::new(l, RegistryAuth::Anonymous).map(|s| s.base);
        assert_eq!(
            s("127.0.0.1:5000/team/cache").ok().as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(
            s("localhost:5000/cache").ok().as_deref(),
            Some("http://localhost:5000")
        );
        assert_eq!(
            s("ghcr.io/acme/cache").ok().as_deref(),
            Some("https://ghcr.io")
        );
        assert_eq!(
            s("http://reg.internal:5000/c").ok().as_deref(),
            Some("http://reg.internal:5000")
        );
        let err = s("ghcr.io/acme/cache:v1")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("without a tag"), "{err}");
    }
}
