//! Registry credentials: values Kiln was given ([`RegistryAuth`]), or what `docker login` left
//! in `config.json` ([`DockerConfig`]).
//!
//! # `config.json`
//! Found at `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`. A missing file is
//! an empty config (anonymous everywhere); a file that is not valid JSON is an error naming the
//! file, line and column. Three parts are read:
//! - `auths`: per server, `auth` (base64 of `user:password`) or `username`/`password`, and
//!   `identitytoken`;
//! - `credHelpers`: per server, the name of a credential helper;
//! - `credsStore`: the helper for every server `credHelpers` does not name.
//!
//! # Which entry a registry uses
//! As docker: a helper named in `credHelpers` for the registry, else `credsStore`, else the
//! `auths` entry. Keys match when they are the registry itself or a URL of it
//! (`https://host`, `http://host`, `https://host/v1/`, anything whose host part is the
//! registry); Docker Hub (`docker.io`) is stored under `https://index.docker.io/v1/`.
//!
//! # Credential helpers
//! `docker-credential-NAME get` receives the server on stdin and prints
//! `{"ServerURL": ..., "Username": ..., "Secret": ...}`; the user `<token>` means the secret
//! is an identity token. A helper that answers "credentials not found" means anonymous. The
//! helper is found on a search path given by the caller (default: `$PATH`); running it goes
//! through the [`CredentialHelper`] trait, so tests (and callers) can substitute it. A helper
//! that does not answer within [`ProcessHelper::timeout`] (30 s) is stopped.
//!
//! Secrets never appear in `Debug` output or in error messages.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

/// The server address docker uses for Docker Hub.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// A user name and password (or access token used as a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// How to authenticate to one registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    #[default]
    Anonymous,
    Basic(Credentials),
    /// An OAuth refresh token (`identitytoken` in `config.json`, user `<token>` from a helper).
    IdentityToken(String),
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic(c) => f.debug_tuple("Basic").field(c).finish(),
            RegistryAuth::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

impl RegistryAuth {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> RegistryAuth {
        RegistryAuth::Basic(Credentials {
            username: username.into(),
            password: password.into(),
        })
    }

    /// What the Docker Engine API takes as `X-Registry-Auth` (bollard encodes it), for the
    /// registry `server` (a registry name such as `ghcr.io` or `docker.io`; Docker Hub is sent
    /// as [`DOCKER_HUB_SERVER`]).
    pub fn to_docker_credentials(&self, server: &str) -> DockerCredentials {
        let serveraddress = Some(server_address(server));
        match self {
            RegistryAuth::Anonymous => DockerCredentials {
                serveraddress,
                ..DockerCredentials::default()
            },
            RegistryAuth::Basic(c) => DockerCredentials {
                username: Some(c.username.clone()),
                password: Some(c.password.clone()),
                serveraddress,
                ..DockerCredentials::default()
            },
            RegistryAuth::IdentityToken(token) => DockerCredentials {
                identitytoken: Some(token.clone()),
                serveraddress,
                ..DockerCredentials::default()
            },
        }
    }
}

/// The server address docker stores and sends for a registry: [`DOCKER_HUB_SERVER`] for Docker
/// Hub, the registry (`host[:port]`) otherwise.
pub fn server_address(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_SERVER.to_string()
    } else {
        registry.to_string()
    }
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        hostname_of(registry).as_str(),
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// Docker's `ConvertToHostname`: drop the scheme and everything from the first `/`.
fn hostname_of(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest).to_ascii_lowercase()
}

/// Why credentials could not be read. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the docker config `{path}`: {message}\n  hint: {hint}")]
    Read {
        path: PathBuf,
        message: String,
        hint: &'static str,
    },
    #[error(
        "the docker config `{path}` is not valid JSON at line {line}, column {column}: {message}\n  hint: fix the file, or log in again with `docker login`"
    )]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "the `auth` of `{server}` in the docker config `{path}` is not valid: {reason}\n  hint: it must be the base64 of `user:password`; log in again with `docker login {server}`"
    )]
    BadAuthEntry {
        path: PathBuf,
        server: String,
        reason: String,
    },
    #[error(
        "the credential helper `{binary}` (configured for `{server}`) is not on the search path\n  hint: install it, or remove `credsStore`/`credHelpers` from the docker config"
    )]
    HelperMissing { binary: String, server: String },
    #[error(
        "`{name}` is not a usable credential helper name\n  hint: a helper is named by the part after `docker-credential-`, e.g. `pass` or `ecr-login`"
    )]
    BadHelperName { name: String },
    #[error("the credential helper `{binary}` failed for `{server}`: {message}\n  hint: {hint}")]
    HelperFailed {
        binary: String,
        server: String,
        message: String,
        hint: &'static str,
    },
}

/// What a credential helper's `get` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HelperReply {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `docker-credential-<name> get` with `server` on stdin.
pub trait CredentialHelper {
    fn get(&self, name: &str, server: &str) -> Result<HelperReply, AuthError>;
}

/// The real helper runner: finds `docker-credential-<name>` on a search path and runs it.
#[derive(Debug, Clone)]
pub struct ProcessHelper {
    /// Directories to search, in `PATH` syntax; `None` is the process's `$PATH`.
    pub path: Option<OsString>,
    /// How long a helper may take (one waiting for a keychain prompt would block forever).
    pub timeout: Duration,
}

impl Default for ProcessHelper {
    fn default() -> ProcessHelper {
        ProcessHelper::new(None)
    }
}

impl ProcessHelper {
    /// A runner searching `path` (`None`: `$PATH`) with a 30 s timeout.
    pub fn new(path: Option<OsString>) -> ProcessHelper {
        ProcessHelper {
            path,
            timeout: Duration::from_secs(30),
        }
    }

    fn find(&self, binary: &str) -> Option<PathBuf> {
        let path = self.path.clone().or_else(|| std::env::var_os("PATH"))?;
        std::env::split_paths(&path)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(binary))
            .find(|candidate| is_executable(candidate))
    }
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

impl CredentialHelper for ProcessHelper {
    fn get(&self, name: &str, server: &str) -> Result<HelperReply, AuthError> {
        let binary = format!("docker-credential-{name}");
        let program = self.find(&binary).ok_or_else(|| AuthError::HelperMissing {
            binary: binary.clone(),
            server: server.to_string(),
        })?;
        let failed = |message: String| AuthError::HelperFailed {
            binary: binary.clone(),
            server: server.to_string(),
            message,
            hint: "run it by hand (`echo SERVER | docker-credential-NAME get`) to see why",
        };
        let mut child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot start `{}`: {e}", program.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading stdin closes the pipe: not an error by itself.
            let _ = stdin.write_all(server.as_bytes());
        }
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(failed(format!(
                        "it did not answer within {} s and was stopped",
                        self.timeout.as_secs_f32()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(failed(format!("waiting for it failed: {e}"))),
            }
        };
        let collect = |reader: std::thread::JoinHandle<Vec<u8>>| {
            String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned()
        };
        Ok(HelperReply {
            success: status.success(),
            stdout: collect(stdout),
            stderr: collect(stderr),
        })
    }
}

/// Reads a child's pipe to its end on a thread of its own (so neither pipe can fill up and
/// block the helper).
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// One `auths` entry of `config.json`.
#[derive(Clone, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

/// Docker's client configuration, as far as credentials go.
#[derive(Clone, Default)]
pub struct DockerConfig {
    /// Where it was read from (`None` for an empty config built in code).
    pub path: Option<PathBuf>,
    auths: BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("auths", &self.auths.keys().collect::<Vec<_>>())
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .finish()
    }
}

impl DockerConfig {
    /// Where docker keeps its config: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`; `None` when neither variable is set.
    pub fn default_path(
        docker_config: Option<OsString>,
        home: Option<OsString>,
    ) -> Option<PathBuf> {
        match (docker_config, home) {
            (Some(dir), _) if !dir.is_empty() => Some(PathBuf::from(dir).join("config.json")),
            (_, Some(home)) if !home.is_empty() => {
                Some(PathBuf::from(home).join(".docker").join("config.json"))
            }
            _ => None,
        }
    }

    /// Loads the config from the standard location of this process's environment.
    pub fn load_default() -> Result<DockerConfig, AuthError> {
        match DockerConfig::default_path(
            std::env::var_os("DOCKER_CONFIG"),
            std::env::var_os("HOME"),
        ) {
            Some(path) => DockerConfig::load(&path),
            None => Ok(DockerConfig::default()),
        }
    }

    /// Loads a config file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<DockerConfig, AuthError> {
        match std::fs::read_to_string(path) {
            Ok(text) => DockerConfig::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig {
                path: Some(path.to_path_buf()),
                ..DockerConfig::default()
            }),
            Err(e) => Err(AuthError::Read {
                path: path.to_path_buf(),
                message: e.to_string(),
                hint: "check the file's permissions, or point `DOCKER_CONFIG` elsewhere",
            }),
        }
    }

    /// Parses the text of a config file read from `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<DockerConfig, AuthError> {
        let file: ConfigFile = if text.trim().is_empty() {
            ConfigFile::default()
        } else {
            serde_json::from_str(text).map_err(|e| AuthError::Syntax {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
                message: strip_position(&e.to_string()),
            })?
        };
        Ok(DockerConfig {
            path: Some(path.to_path_buf()),
            auths: file.auths,
            creds_store: file.creds_store.filter(|s| !s.is_empty()),
            cred_helpers: file.cred_helpers,
        })
    }

    /// Credentials for `registry` (`host[:port]`, e.g. `ghcr.io` or `docker.io`), running
    /// credential helpers found on `$PATH`.
    pub fn lookup(&self, registry: &str) -> Result<RegistryAuth, AuthError> {
        self.lookup_with(registry, &ProcessHelper::default())
    }

    /// [`DockerConfig::lookup`] with a given helper runner (e.g. `ProcessHelper::new(Some(path))`).
    pub fn lookup_with(
        &self,
        registry: &str,
        helpers: &dyn CredentialHelper,
    ) -> Result<RegistryAuth, AuthError> {
        let server = server_address(registry);
        let helper = self
            .matching(&self.cred_helpers, registry)
            .map(|(_, name)| name.clone())
            .or_else(|| self.creds_store.clone());
        if let Some(name) = helper {
            return run_helper(helpers, &name, &server);
        }
        match self.matching(&self.auths, registry) {
            Some((key, entry)) => self.decode_entry(key, entry),
            None => Ok(RegistryAuth::Anonymous),
        }
    }

    /// The entry of `map` for `registry`: the exact key first, then its URL forms, then any
    /// key whose host part is the registry (Docker Hub: any of its names).
    fn matching<'a, V>(
        &self,
        map: &'a BTreeMap<String, V>,
        registry: &str,
    ) -> Option<(&'a String, &'a V)> {
        let registry = registry.trim_end_matches('/').to_ascii_lowercase();
        let hub = is_docker_hub(&registry);
        let mut preferred = vec![
            registry.clone(),
            format!("https://{registry}"),
            format!("http://{registry}"),
            format!("https://{registry}/v1/"),
        ];
        if hub {
            preferred.insert(0, DOCKER_HUB_SERVER.to_string());
        }
        for key in &preferred {
            if let Some(found) = map.get_key_value(key.as_str()) {
                return Some(found);
            }
        }
        map.iter().find(|(key, _)| {
            let host = hostname_of(key);
            if hub {
                is_docker_hub(&host)
            } else {
                host == registry
            }
        })
    }

    fn decode_entry(&self, key: &str, entry: &AuthEntry) -> Result<RegistryAuth, AuthError> {
        if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(RegistryAuth::IdentityToken(token.to_string()));
        }
        let bad = |reason: &str| AuthError::BadAuthEntry {
            path: self.path.clone().unwrap_or_default(),
            server: key.to_string(),
            reason: reason.to_string(),
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("it is not base64"))?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| bad("it does not decode to text"))?;
            let Some((username, password)) = decoded.split_once(':') else {
                return Err(bad("it has no `:` between user and password"));
            };
            return Ok(RegistryAuth::basic(username, password.trim_matches('\0')));
        }
        match (&entry.username, &entry.password) {
            (Some(u), Some(p)) if !u.is_empty() => Ok(RegistryAuth::basic(u, p)),
            _ => Ok(RegistryAuth::Anonymous),
        }
    }
}

/// serde_json's message ends with ` at line L column C`; the error names those itself.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[derive(Deserialize)]
struct HelperCredentials {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

fn run_helper(
    helpers: &dyn CredentialHelper,
    name: &str,
    server: &str,
) -> Result<RegistryAuth, AuthError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(AuthError::BadHelperName {
            name: name.to_string(),
        });
    }
    let binary = format!("docker-credential-{name}");
    let reply = helpers.get(name, server)?;
    let failed = |message: String, hint: &'static str| AuthError::HelperFailed {
        binary: binary.clone(),
        server: server.to_string(),
        message,
        hint,
    };
    if !reply.success {
        let said = format!("{} {}", reply.stdout.trim(), reply.stderr.trim());
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(RegistryAuth::Anonymous);
        }
        return Err(failed(
            format!("it exited with an error: `{}`", said.trim()),
            "run `docker login` again, or check the helper's own setup",
        ));
    }
    if reply.stdout.trim().is_empty() {
        return Ok(RegistryAuth::Anonymous);
    }
    let creds: HelperCredentials = serde_json::from_str(reply.stdout.trim()).map_err(|e| {
        failed(
            format!("its answer is not the expected JSON ({e})"),
            "the helper must print `{\"ServerURL\":...,\"Username\":...,\"Secret\":...}`",
        )
    })?;
    Ok(if creds.username == "<token>" {
        RegistryAuth::IdentityToken(creds.secret)
    } else if creds.username.is_empty() && creds.secret.is_empty() {
        RegistryAuth::Anonymous
    } else {
        RegistryAuth::Basic(Credentials {
            username: creds.username,
            password: creds.secret,
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn config(json: &str) -> DockerConfig {
        DockerConfig::parse(json, Path::new("/home/u/.docker/config.json")).unwrap()
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    /// A helper runner that records its calls and answers with a fixed reply.
    struct FakeHelper {
        reply: Result<HelperReply, ()>,
        calls: RefCell<Vec<(String, String)>>,
    }

    impl FakeHelper {
        fn ok(stdout: &str) -> FakeHelper {
            FakeHelper::replying(true, stdout)
        }
        fn replying(success: bool, stdout: &str) -> FakeHelper {
            FakeHelper {
                reply: Ok(HelperReply {
                    success,
                    stdout: stdout.to_string(),
                    stderr: String::new(),
                }),
                calls: RefCell::new(Vec::new()),
            }
        }
        fn missing() -> FakeHelper {
            FakeHelper {
                reply: Err(()),
                calls: RefCell::new(Vec::new()),
            }
        }
    }

    impl CredentialHelper for FakeHelper {
        fn get(&self, name: &str, server: &str) -> Result<HelperReply, AuthError> {
            self.calls
                .borrow_mut()
                .push((name.to_string(), server.to_string()));
            self.reply.clone().map_err(|()| AuthError::HelperMissing {
                binary: format!("docker-credential-{name}"),
                server: server.to_string(),
            })
        }
    }

    #[test]
    fn debug_output_never_shows_a_password_or_token() {
        let basic = RegistryAuth::basic("me", "hunter2");
        let token = RegistryAuth::IdentityToken("tok-secret".to_string());
        let shown = format!("{basic:?} {token:?}");
        assert!(shown.contains("me"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("tok-secret"), "{shown}");
        let cfg = config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("u:pw")
        ));
        let shown = format!("{cfg:?}");
        assert!(!shown.contains(&b64("u:pw")), "{shown}");
    }

    #[test]
    fn an_auth_field_decodes_to_user_and_password() {
        let cfg = config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("me:pa:ss")
        ));
        assert_eq!(
            cfg.lookup_with("ghcr.io", &FakeHelper::missing()).unwrap(),
            RegistryAuth::basic("me", "pa:ss")
        );
    }

    #[test]
    fn username_and_password_fields_are_used_without_auth() {
        let cfg = config(r#"{"auths":{"ghcr.io":{"username":"me","password":"pw"}}}"#);
        assert_eq!(
            cfg.lookup_with("ghcr.io", &FakeHelper::missing()).unwrap(),
            RegistryAuth::basic("me", "pw")
        );
    }

    #[test]
    fn an_identity_token_wins_over_a_password() {
        let cfg = config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}","identitytoken":"tok"}}}}}}"#,
            b64("me:pw")
        ));
        assert_eq!(
            cfg.lookup_with("ghcr.io", &FakeHelper::missing()).unwrap(),
            RegistryAuth::IdentityToken("tok".to_string())
        );
    }

    #[test]
    fn url_forms_of_the_registry_match_its_entry() {
        for key in [
            "https://ghcr.io",
            "http://ghcr.io",
            "https://ghcr.io/v1/",
            "https://ghcr.io/v2/",
            "ghcr.io",
        ] {
            let cfg = config(&format!(
                r#"{{"auths":{{"{key}":{{"auth":"{}"}}}}}}"#,
                b64("u:p")
            ));
            assert_eq!(
                cfg.lookup_with("ghcr.io", &FakeHelper::missing()).unwrap(),
                RegistryAuth::basic("u", "p"),
                "{key}"
            );
        }
    }

    #[test]
    fn the_exact_key_wins_over_another_url_form() {
        let cfg = config(&format!(
            r#"{{"auths":{{"http://ghcr.io":{{"auth":"{}"}},"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("old:x"),
            b64("new:y")
        ));
        assert_eq!(
            cfg.lookup_with("ghcr.io", &FakeHelper::missing()).unwrap(),
            RegistryAuth::basic("new", "y")
        );
    }

    #[test]
    fn docker_hub_matches_the_index_v1_key() {
        let cfg = config(&format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            b64("hubuser:pw")
        ));
        for registry in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(
                cfg.lookup_with(registry, &FakeHelper::missing()).unwrap(),
                RegistryAuth::basic("hubuser", "pw"),
                "{registry}"
            );
        }
        let cfg = config(&format!(
            r#"{{"auths":{{"docker.io":{{"auth":"{}"}}}}}}"#,
            b64("plain:pw")
        ));
        assert_eq!(
            cfg.lookup_with("docker.io", &FakeHelper::missing())
                .unwrap(),
            RegistryAuth::basic("plain", "pw")
        );
    }

    #[test]
    fn another_registry_or_a_host_prefix_does_not_match() {
        let cfg = config(&format!(
            r#"{{"auths":{{"ghcr.io.evil.com":{{"auth":"{}"}},"https://quay.io":{{"auth":"{}"}}}}}}"#,
            b64("a:b"),
            b64("c:d")
        ));
        assert_eq!(
            cfg.lookup_with("ghcr.io", &FakeHelper::missing()).unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn a_registry_with_a_port_needs_the_port_in_the_key() {
        let cfg = config(&format!(
            r#"{{"auths":{{"localhost:5000":{{"auth":"{}"}}}}}}"#,
            b64("a:b")
        ));
        assert_eq!(
            cfg.lookup_with("localhost:5000", &FakeHelper::missing())
                .unwrap(),
            RegistryAuth::basic("a", "b")
        );
        assert_eq!(
            cfg.lookup_with("localhost", &FakeHelper::missing())
                .unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn a_broken_auth_field_is_an_error_naming_the_server_and_file() {
        let cfg = config(r#"{"auths":{"ghcr.io":{"auth":"!!!"}}}"#);
        let e = cfg
            .lookup_with("ghcr.io", &FakeHelper::missing())
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`ghcr.io`"), "{msg}");
        assert!(msg.contains("/home/u/.docker/config.json"), "{msg}");
        assert!(msg.contains("hint:"), "{msg}");
        let cfg = config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("nocolon")
        ));
        assert!(matches!(
            cfg.lookup_with("ghcr.io", &FakeHelper::missing()),
            Err(AuthError::BadAuthEntry { .. })
        ));
    }

    #[test]
    fn broken_json_is_an_error_with_path_line_and_column() {
        let e =
            DockerConfig::parse("{\n  \"auths\": {,\n}", Path::new("/c/config.json")).unwrap_err();
        let AuthError::Syntax { line, column, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!((*line, *column), (2, 13));
        let msg = e.to_string();
        assert!(msg.contains("`/c/config.json`"), "{msg}");
        assert!(msg.contains("line 2, column 13"), "{msg}");
    }

    #[test]
    fn a_missing_file_is_an_empty_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DockerConfig::load(&dir.path().join("nope.json")).unwrap();
        assert_eq!(cfg.lookup("ghcr.io").unwrap(), RegistryAuth::Anonymous);
    }

    #[test]
    fn a_file_is_loaded_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#, b64("u:p")),
        )
        .unwrap();
        let cfg = DockerConfig::load(&path).unwrap();
        assert_eq!(cfg.path.as_deref(), Some(path.as_path()));
        assert_eq!(
            cfg.lookup_with("ghcr.io", &FakeHelper::missing()).unwrap(),
            RegistryAuth::basic("u", "p")
        );
    }

    #[test]
    fn the_default_path_prefers_docker_config_over_home() {
        assert_eq!(
            DockerConfig::default_path(Some("/dc".into()), Some("/home/u".into())),
            Some(PathBuf::from("/dc/config.json"))
        );
        assert_eq!(
            DockerConfig::default_path(None, Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.docker/config.json"))
        );
        assert_eq!(
            DockerConfig::default_path(Some("".into()), Some("/h".into())),
            Some(PathBuf::from("/h/.docker/config.json"))
        );
        assert_eq!(DockerConfig::default_path(None, None), None);
    }

    #[test]
    fn a_cred_helper_for_the_registry_is_run_with_the_server_on_stdin() {
        let cfg = config(r#"{"credHelpers":{"ghcr.io":"gh"},"credsStore":"desktop"}"#);
        let helper = FakeHelper::ok(r#"{"ServerURL":"ghcr.io","Username":"me","Secret":"s3"}"#);
        assert_eq!(
            cfg.lookup_with("ghcr.io", &helper).unwrap(),
            RegistryAuth::basic("me", "s3")
        );
        assert_eq!(
            helper.calls.borrow().as_slice(),
            &[("gh".to_string(), "ghcr.io".to_string())]
        );
    }

    #[test]
    fn the_creds_store_serves_registries_without_their_own_helper() {
        let cfg = config(&format!(
            r#"{{"credHelpers":{{"ghcr.io":"gh"}},"credsStore":"desktop","auths":{{"quay.io":{{"auth":"{}"}}}}}}"#,
            b64("file:pw")
        ));
        let helper = FakeHelper::ok(r#"{"Username":"store","Secret":"x"}"#);
        assert_eq!(
            cfg.lookup_with("quay.io", &helper).unwrap(),
            RegistryAuth::basic("store", "x")
        );
        assert_eq!(helper.calls.borrow()[0].0, "desktop");
    }

    #[test]
    fn docker_hub_is_asked_from_a_helper_as_the_index_v1_url() {
        let cfg = config(r#"{"credsStore":"desktop"}"#);
        let helper = FakeHelper::ok(r#"{"Username":"u","Secret":"p"}"#);
        cfg.lookup_with("docker.io", &helper).unwrap();
        assert_eq!(helper.calls.borrow()[0].1, DOCKER_HUB_SERVER);
    }

    #[test]
    fn a_token_user_from_a_helper_is_an_identity_token() {
        let cfg = config(r#"{"credsStore":"x"}"#);
        let helper = FakeHelper::ok(r#"{"ServerURL":"a","Username":"<token>","Secret":"rt"}"#);
        assert_eq!(
            cfg.lookup_with("ghcr.io", &helper).unwrap(),
            RegistryAuth::IdentityToken("rt".to_string())
        );
    }

    #[test]
    fn a_helper_without_credentials_means_anonymous() {
        let cfg = config(r#"{"credsStore":"x"}"#);
        let helper = FakeHelper::replying(false, "credentials not found in native keychain\n");
        assert_eq!(
            cfg.lookup_with("ghcr.io", &helper).unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn a_failing_helper_is_an_error_with_its_output() {
        let cfg = config(r#"{"credsStore":"x"}"#);
        let helper = FakeHelper::replying(false, "keychain locked");
        let e = cfg.lookup_with("ghcr.io", &helper).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`docker-credential-x`"), "{msg}");
        assert!(msg.contains("keychain locked"), "{msg}");
    }

    #[test]
    fn a_helper_printing_garbage_is_an_error() {
        let cfg = config(r#"{"credsStore":"x"}"#);
        let e = cfg
            .lookup_with("ghcr.io", &FakeHelper::ok("not json"))
            .unwrap_err();
        assert!(matches!(e, AuthError::HelperFailed { .. }), "{e:?}");
    }

    #[test]
    fn a_helper_name_with_a_path_is_refused() {
        let cfg = config(r#"{"credsStore":"../../bin/sh"}"#);
        let helper = FakeHelper::ok("{}");
        assert!(matches!(
            cfg.lookup_with("ghcr.io", &helper),
            Err(AuthError::BadHelperName { .. })
        ));
        assert!(helper.calls.borrow().is_empty());
    }

    #[test]
    fn a_helper_missing_from_the_path_is_an_error_naming_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(r#"{"credsStore":"kilnabsent"}"#);
        let runner = ProcessHelper::new(Some(dir.path().as_os_str().to_owned()));
        let e = cfg.lookup_with("ghcr.io", &runner).unwrap_err();
        assert!(matches!(e, AuthError::HelperMissing { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("`docker-credential-kilnabsent`"), "{msg}");
        assert!(msg.contains("hint:"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn a_real_helper_script_on_the_search_path_is_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("docker-credential-kilntest");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n\
             if [ \"$server\" = ghcr.io ]; then\n\
               printf '{\"ServerURL\":\"%s\",\"Username\":\"bot\",\"Secret\":\"s3cr3t\"}' \"$server\"\n\
             else\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = config(r#"{"credsStore":"kilntest"}"#);
        let mut search = OsString::from("/nonexistent-dir:");
        search.push(dir.path());
        let runner = ProcessHelper::new(Some(search));
        assert_eq!(
            cfg.lookup_with("ghcr.io", &runner).unwrap(),
            RegistryAuth::basic("bot", "s3cr3t")
        );
        assert_eq!(
            cfg.lookup_with("quay.io", &runner).unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn a_cred_helper_for_docker_hub_is_found_under_the_index_url() {
        let cfg = config(r#"{"credHelpers":{"https://index.docker.io/v1/":"hub"}}"#);
        let helper = FakeHelper::ok(r#"{"Username":"u","Secret":"p"}"#);
        assert_eq!(
            cfg.lookup_with("docker.io", &helper).unwrap(),
            RegistryAuth::basic("u", "p")
        );
        assert_eq!(helper.calls.borrow()[0].0, "hub");
        // Other registries have no helper and no entry.
        let unused = FakeHelper::ok("{}");
        assert_eq!(
            cfg.lookup_with("ghcr.io", &unused).unwrap(),
            RegistryAuth::Anonymous
        );
        assert!(unused.calls.borrow().is_empty());
    }

    #[test]
    fn a_helper_printing_nothing_means_anonymous() {
        let cfg = config(r#"{"credsStore":"x"}"#);
        assert_eq!(
            cfg.lookup_with("ghcr.io", &FakeHelper::ok("\n")).unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn an_empty_file_or_object_is_an_empty_config() {
        for text in ["", "  \n", "{}"] {
            let cfg = config(text);
            assert_eq!(
                cfg.lookup_with("ghcr.io", &FakeHelper::missing()).unwrap(),
                RegistryAuth::Anonymous
            );
        }
    }

    #[test]
    fn unknown_fields_in_the_config_are_ignored() {
        let cfg = config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}","email":"a@b"}}}},"psFormat":"x","plugins":{{}}}}"#,
            b64("u:p")
        ));
        assert_eq!(
            cfg.lookup_with("ghcr.io", &FakeHelper::missing()).unwrap(),
            RegistryAuth::basic("u", "p")
        );
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials {
            username: "me".into(),
            password: "pw-value".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("***") && !shown.contains("pw-value"),
            "{shown}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_helper_that_hangs_is_stopped_after_the_timeout() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("docker-credential-kilnslow");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 10\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = config(r#"{"credsStore":"kilnslow"}"#);
        let mut runner = ProcessHelper::new(Some(dir.path().as_os_str().to_owned()));
        runner.timeout = Duration::from_millis(200);
        let started = Instant::now();
        let e = cfg.lookup_with("ghcr.io", &runner).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let msg = e.to_string();
        assert!(msg.contains("did not answer"), "{msg}");
    }

    #[test]
    fn docker_credentials_carry_the_fields_the_engine_api_expects() {
        let c = RegistryAuth::basic("u", "p").to_docker_credentials("ghcr.io");
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p"));
        assert_eq!(c.serveraddress.as_deref(), Some("ghcr.io"));
        assert_eq!(c.identitytoken, None);
        let c = RegistryAuth::IdentityToken("t".into()).to_docker_credentials("docker.io");
        assert_eq!(c.identitytoken.as_deref(), Some("t"));
        assert_eq!(c.serveraddress.as_deref(), Some(DOCKER_HUB_SERVER));
        assert_eq!(c.username, None);
        let c = RegistryAuth::Anonymous.to_docker_credentials("quay.io");
        assert_eq!((c.username, c.password), (None, None));
        let json =
            serde_json::to_value(RegistryAuth::basic("u", "p").to_docker_credentials("ghcr.io"))
                .unwrap();
        assert_eq!(json["serveraddress"], "ghcr.io");
        assert_eq!(json["username"], "u");
    }
}
