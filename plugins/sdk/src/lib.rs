//! Write Kiln step plugins in Rust.
//!
//! A plugin is a type that implements [`Plugin`], exported with [`export_plugin!`]:
//!
//! ```ignore
//! use kiln_plugin_sdk::{export_plugin, Context, Info, Plugin, StepError};
//!
//! struct Hello;
//! impl Plugin for Hello {
//!     fn info() -> Info {
//!         Info::new("hello", env!("CARGO_PKG_VERSION"), "says hello")
//!     }
//!     fn run(ctx: Context) -> Result<(), StepError> {
//!         kiln_plugin_sdk::log::info(&format!("hello from {}", ctx.step_id));
//!         kiln_plugin_sdk::set_output("greeting", &"hello")
//!     }
//! }
//! export_plugin!(Hello);
//! ```
//!
//! Build it for `wasm32-wasip2`; the output is a WASI 0.2 component that `uses:` can name by path.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
pub use serde_json::{self, Value, json};

/// The generated bindings of the `kiln:plugin/step` world. The only `generate!` on the guest side.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "step",
        pub_export_macro: true,
        export_macro_name: "__export_step_world",
        default_bindings_module: "kiln_plugin_sdk::bindings",
    });
}

use bindings::kiln::plugin::{log as wit_log, outputs as wit_outputs, types as wit};

/// A privilege a plugin asks for; the step's `allow:` must grant it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Write to the run workspace (`allow: { workspace: write }`).
    WorkspaceWrite,
    /// Connect to the hosts listed in `allow: { net: [...] }`.
    Network,
    /// Use [`git`] through the host (network remotes must still be listed in `allow.net`).
    Git,
    /// Build images with [`image::build`] through the host's BuildKit.
    Buildkit,
    /// Push images with [`image::push`] (registries must be listed in `allow.net`).
    Registry,
    /// Send HTTP(S) requests with [`http::send`] (hosts must be listed in `allow.net`).
    Http,
    /// Save and restore workspace directories with [`cache`] (restores need `WorkspaceWrite`).
    Cache,
}

/// What a plugin says about itself.
#[derive(Debug, Clone)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub description: String,
    /// JSON Schema of the `with:` mapping.
    pub config_schema: Value,
    /// Outputs the plugin may set; empty means any.
    pub outputs: Vec<String>,
    pub capabilities: Vec<Capability>,
    /// The plugin has effects the step cache cannot replay (pushes, notifications, cache
    /// restores) or reads a world that moves: its steps are never cached. See [`Info::side_effects`].
    pub side_effects: bool,
}

impl Info {
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Info {
            name: name.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
            config_schema: json!({ "type": "object" }),
            outputs: Vec::new(),
            capabilities: Vec::new(),
            side_effects: false,
        }
    }

    /// Declare that running the plugin does more than compute its outputs and workspace files
    /// from its inputs (it pushes, notifies, deploys, restores a cache): the step cache never
    /// skips its steps, and `cache: true` on them is an error.
    pub fn side_effects(mut self) -> Self {
        self.side_effects = true;
        self
    }

    pub fn schema(mut self, schema: Value) -> Self {
        self.config_schema = schema;
        self
    }

    pub fn outputs(mut self, names: &[&str]) -> Self {
        self.outputs = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    pub fn capability(mut self, capability: Capability) -> Self {
        self.capabilities.push(capability);
        self
    }
}

/// One problem with a step's config: where (a JSON Pointer) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pointer: String,
    pub message: String,
}

impl Problem {
    pub fn at(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// Why a step did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// The config is wrong; not retried.
    InvalidConfig(String),
    /// Something the plugin needs was refused; not retried.
    Denied(String),
    /// The step failed; retried when the step has `retry:`.
    Failed(String),
}

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            StepError::Denied(e.to_string())
        } else {
            StepError::Failed(e.to_string())
        }
    }
}

/// Everything a plugin learns about the step it runs.
#[derive(Debug, Clone)]
pub struct Context {
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
    /// The resolved `with:` mapping.
    pub config: Value,
    /// The triggering event.
    pub event: Value,
    /// Guest path of the run workspace.
    pub workspace: PathBuf,
}

impl Context {
    /// Deserialize the config into `T`; a mismatch is an [`StepError::InvalidConfig`] naming the key.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        parse_config(&self.config).map_err(|p| {
            let at = if p.pointer.is_empty() {
                String::new()
            } else {
                format!(" at `{}`", p.pointer)
            };
            StepError::InvalidConfig(format!("{}{at}", p.message))
        })
    }

    /// Resolve `relative` inside the workspace. Absolute paths and `..` that would leave the
    /// workspace are refused, so a config cannot point a plugin outside it.
    pub fn workspace_path(&self, relative: &str) -> Result<PathBuf, StepError> {
        let mut out = self.workspace.clone();
        let mut depth = 0usize;
        for part in Path::new(relative).components() {
            match part {
                Component::Normal(p) => {
                    out.push(p);
                    depth += 1;
                }
                Component::CurDir => {}
                Component::ParentDir if depth > 0 => {
                    out.pop();
                    depth -= 1;
                }
                _ => {
                    return Err(StepError::InvalidConfig(format!(
                        "path `{relative}` leaves the workspace; use a path relative to it"
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// Deserialize a config value, reporting the first mismatch with its JSON Pointer.
pub fn parse_config<T: DeserializeOwned>(config: &Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let pointer = pointer_of(e.path());
        Problem::at(pointer, e.inner().to_string())
    })
}

/// Validate a config at plan time by deserializing it into `T`. A value that is still an
/// unresolved `${{ ... }}` expression cannot be judged yet, so a mismatch there is not a problem.
pub fn check_config<T: DeserializeOwned>(config: &Value) -> Result<(), Vec<Problem>> {
    match parse_config::<T>(config) {
        Ok(_) => Ok(()),
        Err(problem) => {
            let at = config.pointer(&problem.pointer);
            let is_expression = matches!(at, Some(Value::String(s)) if s.contains("${{"));
            if is_expression {
                Ok(())
            } else {
                Err(vec![problem])
            }
        }
    }
}

/// A problem when the string at `config[key]` is an absolute path: workspace paths are relative.
pub fn check_relative_path(config: &Value, key: &str) -> Option<Problem> {
    match config.get(key) {
        Some(Value::String(p)) if p.starts_with('/') => Some(Problem::at(
            format!("/{key}"),
            format!("{key} `{p}` is absolute; use a path relative to the workspace"),
        )),
        _ => None,
    }
}

/// `Ok` when no problem was found: the end of a `validate` that collects every problem.
pub fn no_problems(problems: Vec<Problem>) -> Result<(), Vec<Problem>> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Enum { variant } => {
                out.push('/');
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Set output `name` to `value` (serialized as JSON).
pub fn set_output(name: &str, value: &impl Serialize) -> Result<(), StepError> {
    let json = serde_json::to_string(value)
        .map_err(|e| StepError::Failed(format!("output `{name}` is not serializable: {e}")))?;
    wit_outputs::set(name, &json).map_err(StepError::Failed)
}

/// Lines for the step's log.
/// One string or a list of them, in a config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

pub mod log {
    use super::wit_log;

    pub fn debug(message: &str) {
        wit_log::log(wit_log::Level::Debug, message);
    }
    pub fn info(message: &str) {
        wit_log::log(wit_log::Level::Info, message);
    }
    pub fn warn(message: &str) {
        wit_log::log(wit_log::Level::Warn, message);
    }
    pub fn error(message: &str) {
        wit_log::log(wit_log::Level::Error, message);
    }
}

/// Git, done by the host on the plugin's behalf (the plugin must declare [`Capability::Git`]).
///
/// Credentials name secrets of the step; the host reads their values, so they never enter the
/// plugin. Paths are inside the workspace (`/workspace/src` or `src`).
pub mod git {
    use crate::bindings::kiln::plugin::git as wit_git;
    pub use crate::bindings::kiln::plugin::git::{
        BasicAuth, Change, ChangeKind, CloneRequest, CommitInfo, CommitRequest, CommitResult,
        Credentials, Error, ErrorKind, HostKeyCheck, Identity, PushRequest, PushResult, Remote,
        SshKeyAuth,
    };

    /// Clone (or update an earlier clone) through the host's mirror cache.
    pub fn clone(request: &CloneRequest) -> Result<CommitInfo, Error> {
        wit_git::clone(request)
    }

    /// Files changed between the merge base of `base` and `head`, and `head`.
    pub fn changed_files(
        repo: &str,
        base: &str,
        head: &str,
        remote: Option<&Remote>,
    ) -> Result<Vec<Change>, Error> {
        wit_git::changed_files(repo, base, head, remote)
    }

    /// The commit a revision names.
    pub fn resolve(repo: &str, rev: &str) -> Result<CommitInfo, Error> {
        wit_git::resolve(repo, rev)
    }

    /// A file's content at a revision; `None` if the commit has no such file.
    pub fn read_file(repo: &str, rev: &str, path: &str) -> Result<Option<Vec<u8>>, Error> {
        wit_git::read_file(repo, rev, path)
    }

    /// Every file path of a revision, sorted.
    pub fn list_files(repo: &str, rev: &str) -> Result<Vec<String>, Error> {
        wit_git::list_files(repo, rev)
    }

    /// Stage changes of a working tree and commit them (needs [`crate::Capability::WorkspaceWrite`]).
    pub fn commit(request: &CommitRequest) -> Result<CommitResult, Error> {
        wit_git::commit(request)
    }

    /// Push one commit to one ref of a remote (a URL or a remote's name, e.g. `origin`).
    pub fn push(request: &PushRequest) -> Result<PushResult, Error> {
        wit_git::push(request)
    }

    /// Parses `Name <email>`, as `git commit --author` takes it.
    pub fn parse_identity(text: &str) -> Option<Identity> {
        let (name, rest) = text.split_once('<')?;
        let email = rest.strip_suffix('>')?;
        let (name, email) = (name.trim(), email.trim());
        let bad = |s: &str| s.is_empty() || s.contains(['<', '>', '\n', '\r']);
        if bad(name) || bad(email) || email.contains(char::is_whitespace) {
            return None;
        }
        Some(Identity {
            name: name.to_owned(),
            email: email.to_owned(),
        })
    }

    pub use crate::OneOrMany;

    /// The SSH host-key keys of a git plugin's config, `known-hosts` (a secret's name),
    /// `host-key` (pinned keys) and `insecure-skip-host-key-check`, as JSON Schema properties.
    pub fn host_key_schema() -> crate::Value {
        crate::json!({
            "known-hosts": { "type": "string", "description": "name of the step secret holding known_hosts lines for the SSH server" },
            "host-key": {
                "description": "pinned SSH host key(s): `ssh-ed25519 AAAA...` or known_hosts lines",
                "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ]
            },
            "insecure-skip-host-key-check": { "type": "boolean", "description": "accept any SSH host key (not recommended)" }
        })
    }

    /// `known-hosts`, `host-key` and `insecure-skip-host-key-check` are alternatives.
    pub fn host_key_problems(config: &crate::Value) -> Vec<crate::Problem> {
        let checks: Vec<&str> = ["known-hosts", "host-key", "insecure-skip-host-key-check"]
            .into_iter()
            .filter(|k| {
                config
                    .get(k)
                    .is_some_and(|v| v != &crate::Value::Bool(false))
            })
            .collect();
        if checks.len() < 2 {
            return Vec::new();
        }
        vec![crate::Problem::at(
            format!("/{}", checks[1]),
            format!(
                "{} are alternatives; keep one",
                checks
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        )]
    }

    /// The host-key check those keys ask for (the host's known_hosts when none is given).
    pub fn host_key_check(
        known_hosts: Option<String>,
        host_key: Option<OneOrMany>,
        insecure_skip: bool,
    ) -> HostKeyCheck {
        if insecure_skip {
            HostKeyCheck::AcceptAny
        } else if let Some(secret) = known_hosts {
            HostKeyCheck::KnownHostsSecret(secret)
        } else if let Some(keys) = host_key {
            HostKeyCheck::Pinned(keys.into_vec())
        } else {
            HostKeyCheck::System
        }
    }

    /// A problem when the URL at `config[key]` carries a password (`https://user:pw@host/…`).
    pub fn url_password_problem(config: &crate::Value, key: &str) -> Option<crate::Problem> {
        let crate::Value::String(url) = config.get(key)? else {
            return None;
        };
        let (_, rest) = url.split_once("://")?;
        let (userinfo, _) = rest.split('/').next()?.rsplit_once('@')?;
        userinfo.contains(':').then(|| {
            crate::Problem::at(
                format!("/{key}"),
                "the URL contains a password; remove it and use `auth:` with a secret",
            )
        })
    }

    /// The `auth:` mapping of a git plugin's config: names of the step's secrets, never values.
    /// Exactly one of `token`, `password` or `ssh-key`.
    #[derive(Debug, Clone, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Auth {
        /// Secret holding an HTTPS token.
        pub token: Option<String>,
        /// User name for `token` (default `x-access-token`) or `password`.
        pub username: Option<String>,
        /// Secret holding an HTTPS password.
        pub password: Option<String>,
        /// Secret holding an SSH private key.
        pub ssh_key: Option<String>,
        /// Secret holding the SSH key's passphrase.
        pub passphrase: Option<String>,
    }

    impl Auth {
        /// JSON Schema of the `auth:` mapping, with `description` for the whole.
        pub fn schema(description: &str) -> crate::Value {
            let secret = |what: &str| crate::json!({ "type": "string", "description": format!("name of the step secret holding {what}") });
            crate::json!({
                "type": "object",
                "description": description,
                "properties": {
                    "token": secret("an HTTPS access token"),
                    "username": { "type": "string", "description": "user name for `token` (default `x-access-token`) or `password`" },
                    "password": secret("an HTTPS password"),
                    "ssh-key": secret("an SSH private key (a deploy key)"),
                    "passphrase": secret("the SSH key's passphrase")
                },
                "additionalProperties": false
            })
        }

        /// What is wrong with the `auth:` value at JSON Pointer `at` (shape aside, which
        /// deserializing checks): none or several kinds of credentials, a stray passphrase.
        pub fn problems(auth: &crate::Value, at: &str) -> Vec<crate::Problem> {
            let mut problems = Vec::new();
            let given: Vec<&str> = ["token", "password", "ssh-key"]
                .into_iter()
                .filter(|k| auth.get(k).is_some())
                .collect();
            if given.len() > 1 {
                problems.push(crate::Problem::at(
                    at,
                    format!(
                        "`auth` sets {}; use exactly one of `token`, `password` or `ssh-key`",
                        given.join(" and ")
                    ),
                ));
            }
            if given.is_empty() {
                problems.push(crate::Problem::at(
                    at,
                    "`auth` names no credentials; set `token`, `password` or `ssh-key`",
                ));
            }
            if auth.get("passphrase").is_some() && auth.get("ssh-key").is_none() {
                problems.push(crate::Problem::at(
                    format!("{at}/passphrase"),
                    "`passphrase` only applies to `ssh-key`",
                ));
            }
            problems
        }

        /// The [`Credentials`] these names stand for.
        pub fn credentials(&self) -> Result<Credentials, crate::StepError> {
            let Auth {
                token,
                username,
                password,
                ssh_key,
                passphrase,
            } = self.clone();
            match (token, password, ssh_key) {
                (Some(token), _, _) => Ok(Credentials::Basic(BasicAuth {
                    username: username.unwrap_or_else(|| "x-access-token".into()),
                    password_secret: token,
                })),
                (None, Some(password), _) => Ok(Credentials::Basic(BasicAuth {
                    username: username.unwrap_or_default(),
                    password_secret: password,
                })),
                (None, None, Some(key)) => Ok(Credentials::SshKey(SshKeyAuth {
                    username,
                    key_secret: key,
                    passphrase_secret: passphrase,
                })),
                (None, None, None) => Err(crate::StepError::InvalidConfig(
                    "`auth` names no credentials; set `token`, `password` or `ssh-key`".into(),
                )),
            }
        }
    }

    impl From<Error> for crate::StepError {
        /// Grant, input, credential and trust problems are not retried; network trouble is.
        fn from(e: Error) -> Self {
            match e.kind {
                ErrorKind::Denied
                | ErrorKind::Auth
                | ErrorKind::HostKey
                | ErrorKind::Rejected
                | ErrorKind::Refused => crate::StepError::Denied(e.message),
                ErrorKind::Invalid | ErrorKind::NotFound => {
                    crate::StepError::InvalidConfig(e.message)
                }
                ErrorKind::Unreachable | ErrorKind::Failed => crate::StepError::Failed(e.message),
            }
        }
    }
}

/// OCI images, built by the host's BuildKit ([`Capability::Buildkit`]) and pushed by the host
/// ([`Capability::Registry`]). Paths are in the workspace; passwords and secret mounts name
/// secrets of the step, whose values never enter the plugin.
pub mod image {
    use crate::bindings::kiln::plugin::image as wit_image;
    pub use crate::bindings::kiln::plugin::image::{
        BasicAuth, BuildNetwork, BuildRequest, BuildResult, BuildSecret, Error, ErrorKind,
        PushRequest, PushResult, RegistryAuth, RegistryLogin, TagInfo,
    };

    /// Builds an image; BuildKit's progress goes to the step log.
    pub fn build(request: &BuildRequest) -> Result<BuildResult, Error> {
        wit_image::build(request)
    }

    /// Pushes an image to every target, all or nothing.
    pub fn push(request: &PushRequest) -> Result<PushResult, Error> {
        wit_image::push(request)
    }

    /// The tags of `repository` (`host[:port]/path`) with their digests and creation times.
    pub fn list_tags(repository: &str, auth: &RegistryAuth) -> Result<Vec<TagInfo>, Error> {
        wit_image::list_tags(repository, auth)
    }

    /// Deletes manifest `digest` (and every tag pointing to it); false when it was not there.
    pub fn delete_manifest(
        repository: &str,
        digest: &str,
        auth: &RegistryAuth,
    ) -> Result<bool, Error> {
        wit_image::delete_manifest(repository, digest, auth)
    }

    /// The `auth:` mapping of a registry plugin's config: a username and the name of the
    /// step's secret with the password or token, or the host's Docker config.
    #[derive(Debug, Clone, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Auth {
        pub username: Option<String>,
        /// Secret holding the password or token.
        pub password: Option<String>,
        /// Use the host's `~/.docker/config.json` (`auths` and credential helpers).
        #[serde(default)]
        pub docker_config: bool,
    }

    impl Auth {
        /// JSON Schema of the `auth:` mapping, with `description` for the whole.
        pub fn schema(description: &str) -> crate::Value {
            crate::json!({
                "type": "object",
                "description": description,
                "properties": {
                    "username": { "type": "string", "description": "registry user name" },
                    "password": { "type": "string", "description": "name of the step secret holding the password or token" },
                    "docker-config": { "type": "boolean", "description": "use the host's Docker config (`auths`, credential helpers)" }
                },
                "additionalProperties": false
            })
        }

        /// What is wrong with the `auth:` value at JSON Pointer `at`.
        pub fn problems(auth: &crate::Value, at: &str) -> Vec<crate::Problem> {
            let mut problems = Vec::new();
            let docker = auth.get("docker-config").and_then(|v| v.as_bool()) == Some(true);
            let password = auth.get("password").is_some();
            let username = auth.get("username").is_some();
            if docker && (password || username) {
                problems.push(crate::Problem::at(
                    at,
                    "`auth` sets both `docker-config` and a username/password; use one",
                ));
            }
            if password != username && !docker {
                problems.push(crate::Problem::at(
                    at,
                    "`auth` needs both `username` and `password` (the name of a secret)",
                ));
            }
            problems
        }

        /// The [`RegistryAuth`] these names stand for (anonymous when empty).
        pub fn registry_auth(&self) -> RegistryAuth {
            match (&self.username, &self.password, self.docker_config) {
                (_, _, true) => RegistryAuth::DockerConfig,
                (Some(username), Some(password), false) => RegistryAuth::Basic(BasicAuth {
                    username: username.clone(),
                    password_secret: password.clone(),
                }),
                _ => RegistryAuth::Anonymous,
            }
        }
    }

    impl From<Error> for crate::StepError {
        /// Grant, input and credential problems are not retried; a failed build, an unreachable
        /// daemon or registry are (when the step has `retry:`).
        fn from(e: Error) -> Self {
            match e.kind {
                ErrorKind::Denied | ErrorKind::Auth => crate::StepError::Denied(e.message),
                ErrorKind::Invalid | ErrorKind::NotFound => {
                    crate::StepError::InvalidConfig(e.message)
                }
                ErrorKind::BuildFailed | ErrorKind::Unreachable | ErrorKind::Failed => {
                    crate::StepError::Failed(e.message)
                }
            }
        }
    }
}

/// Outbound HTTP(S), sent by the host ([`Capability::Http`]): only to `host:port`s in the
/// step's `allow.net` (redirects too); credentials and signing keys name secrets of the step,
/// whose values never enter the plugin.
pub mod http {
    use crate::bindings::kiln::plugin::http as wit_http;
    pub use crate::bindings::kiln::plugin::http::{
        Auth as RequestAuth, BasicAuth, Error, ErrorKind, Method, Request, Response, SecretHeader,
        Signature,
    };

    /// Sends one request; any status is a response, only transport problems are errors.
    pub fn send(request: &Request) -> Result<Response, Error> {
        wit_http::send(request)
    }

    impl Method {
        /// Parses `GET`, `post`, ... (case-insensitive).
        pub fn parse(text: &str) -> Option<Method> {
            Some(match text.to_ascii_uppercase().as_str() {
                "GET" => Method::Get,
                "HEAD" => Method::Head,
                "POST" => Method::Post,
                "PUT" => Method::Put,
                "PATCH" => Method::Patch,
                "DELETE" => Method::Delete,
                "OPTIONS" => Method::Options,
                _ => return None,
            })
        }

        pub fn as_str(&self) -> &'static str {
            match self {
                Method::Get => "GET",
                Method::Head => "HEAD",
                Method::Post => "POST",
                Method::Put => "PUT",
                Method::Patch => "PATCH",
                Method::Delete => "DELETE",
                Method::Options => "OPTIONS",
            }
        }
    }

    /// The `auth:` mapping of an HTTP plugin's config, names of the step's secrets: `bearer`,
    /// or `username` + `password`, or `header` + `secret`.
    #[derive(Debug, Clone, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Auth {
        /// Secret holding a bearer token.
        pub bearer: Option<String>,
        pub username: Option<String>,
        /// Secret holding the password for `username`.
        pub password: Option<String>,
        /// A header whose value is the secret `secret`, e.g. `X-Api-Key`.
        pub header: Option<String>,
        pub secret: Option<String>,
    }

    impl Auth {
        /// JSON Schema of the `auth:` mapping.
        pub fn schema(description: &str) -> crate::Value {
            let secret = |what: &str| crate::json!({ "type": "string", "description": format!("name of the step secret holding {what}") });
            crate::json!({
                "type": "object",
                "description": description,
                "properties": {
                    "bearer": secret("a bearer token (`Authorization: Bearer …`)"),
                    "username": { "type": "string", "description": "user name for basic auth, with `password`" },
                    "password": secret("the basic-auth password"),
                    "header": { "type": "string", "description": "a header that carries the secret `secret`, e.g. `X-Api-Key`" },
                    "secret": secret("the value of `header`")
                },
                "additionalProperties": false
            })
        }

        /// What is wrong with the `auth:` value at JSON Pointer `at`: no kind or several kinds
        /// of credentials, a part without its partner.
        pub fn problems(auth: &crate::Value, at: &str) -> Vec<crate::Problem> {
            let has = |k: &str| auth.get(k).is_some();
            let mut problems = Vec::new();
            let kinds: Vec<&str> = [
                ("bearer", has("bearer")),
                ("username/password", has("username") || has("password")),
                ("header/secret", has("header") || has("secret")),
            ]
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| k)
            .collect();
            if kinds.len() > 1 {
                problems.push(crate::Problem::at(
                    at,
                    format!(
                        "`auth` mixes {}; use one of `bearer`, `username` + `password`, or `header` + `secret`",
                        kinds.join(" and ")
                    ),
                ));
            } else if kinds.is_empty() {
                problems.push(crate::Problem::at(
                    at,
                    "`auth` names no credentials; set `bearer`, `username` + `password`, or `header` + `secret`",
                ));
            }
            for (a, b) in [("username", "password"), ("header", "secret")] {
                if has(a) != has(b) {
                    let (given, missing) = if has(a) { (a, b) } else { (b, a) };
                    problems.push(crate::Problem::at(
                        format!("{at}/{given}"),
                        format!("`{given}` needs `{missing}`"),
                    ));
                }
            }
            problems
        }

        /// The [`RequestAuth`] these names stand for.
        pub fn request_auth(&self) -> Result<RequestAuth, crate::StepError> {
            match self.clone() {
                Auth {
                    bearer: Some(b), ..
                } => Ok(RequestAuth::Bearer(b)),
                Auth {
                    username: Some(username),
                    password: Some(password_secret),
                    ..
                } => Ok(RequestAuth::Basic(BasicAuth {
                    username,
                    password_secret,
                })),
                Auth {
                    header: Some(name),
                    secret: Some(secret),
                    ..
                } => Ok(RequestAuth::Header(SecretHeader { name, secret })),
                _ => Err(crate::StepError::InvalidConfig(
                    "`auth` needs `bearer`, `username` + `password`, or `header` + `secret`".into(),
                )),
            }
        }
    }

    impl From<Error> for crate::StepError {
        /// Grants and bad requests are not retried; a server that cannot be reached, is too
        /// slow or breaks off is.
        fn from(e: Error) -> Self {
            match e.kind {
                ErrorKind::Denied | ErrorKind::Tls => crate::StepError::Denied(e.message),
                ErrorKind::Invalid | ErrorKind::TooManyRedirects => {
                    crate::StepError::InvalidConfig(e.message)
                }
                ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::Failed => {
                    crate::StepError::Failed(e.message)
                }
            }
        }
    }
}

/// Directories saved and restored by key in the host's cache store ([`Capability::Cache`]),
/// with GitHub Actions' semantics: exact key, else the newest entry whose key starts with a
/// restore key; entries are immutable.
pub mod cache {
    use crate::bindings::kiln::plugin::cache as wit_cache;
    pub use crate::bindings::kiln::plugin::cache::{
        Error, ErrorKind, RestoreRequest, RestoreResult, SaveRequest, SaveResult,
    };

    /// Restore the entry for `request.key` (or a restore key's newest match) into the workspace.
    pub fn restore(request: &RestoreRequest) -> Result<RestoreResult, Error> {
        wit_cache::restore(request)
    }

    /// Save `request.paths` under `request.key`, unless that key already has an entry.
    pub fn save(request: &SaveRequest) -> Result<SaveResult, Error> {
        wit_cache::save(request)
    }

    impl From<Error> for crate::StepError {
        fn from(e: Error) -> Self {
            match e.kind {
                ErrorKind::Denied => crate::StepError::Denied(e.message),
                ErrorKind::Invalid => crate::StepError::InvalidConfig(e.message),
                ErrorKind::Failed => crate::StepError::Failed(e.message),
            }
        }
    }
}

/// A step plugin. Export it with [`export_plugin!`].
pub trait Plugin {
    /// Describe the plugin.
    fn info() -> Info;
    /// Check a config at plan time. The default accepts everything; see [`check_config`].
    fn validate(_config: &Value) -> Result<(), Vec<Problem>> {
        Ok(())
    }
    /// Run the step.
    fn run(ctx: Context) -> Result<(), StepError>;
}

#[doc(hidden)]
pub struct Exported<P>(std::marker::PhantomData<P>);

impl<P: Plugin> bindings::Guest for Exported<P> {
    fn describe() -> wit::PluginInfo {
        let info = P::info();
        wit::PluginInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            config_schema: info.config_schema.to_string(),
            outputs: info.outputs,
            capabilities: info
                .capabilities
                .into_iter()
                .map(|c| match c {
                    Capability::WorkspaceWrite => wit::Capability::WorkspaceWrite,
                    Capability::Network => wit::Capability::Network,
                    Capability::Git => wit::Capability::Git,
                    Capability::Buildkit => wit::Capability::Buildkit,
                    Capability::Registry => wit::Capability::Registry,
                    Capability::Http => wit::Capability::Http,
                    Capability::Cache => wit::Capability::Cache,
                })
                .collect(),
            caching: if info.side_effects {
                wit::Caching::Never
            } else {
                wit::Caching::Auto
            },
        }
    }

    fn validate(config: String) -> Result<(), Vec<wit::ConfigProblem>> {
        let value: Value = serde_json::from_str(&config).map_err(|e| {
            vec![wit::ConfigProblem {
                pointer: String::new(),
                message: format!("config is not JSON: {e}"),
            }]
        })?;
        P::validate(&value).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| wit::ConfigProblem {
                    pointer: p.pointer,
                    message: p.message,
                })
                .collect()
        })
    }

    fn run(ctx: wit::StepContext) -> Result<(), wit::StepError> {
        let parse = |what: &str, text: &str| {
            serde_json::from_str::<Value>(text).map_err(|e| {
                wit::StepError::Failed(format!("host sent a {what} that is not JSON: {e}"))
            })
        };
        let context = Context {
            run_id: ctx.run_id,
            step_id: ctx.step_id,
            attempt: ctx.attempt,
            config: parse("config", &ctx.config)?,
            event: parse("event", &ctx.event)?,
            workspace: PathBuf::from(ctx.workspace),
        };
        P::run(context).map_err(|e| match e {
            StepError::InvalidConfig(m) => wit::StepError::InvalidConfig(m),
            StepError::Denied(m) => wit::StepError::Denied(m),
            StepError::Failed(m) => wit::StepError::Failed(m),
        })
    }
}

/// Export a [`Plugin`] as the component's `step` world.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        type __KilnExported = $crate::Exported<$plugin>;
        $crate::bindings::__export_step_world!(__KilnExported with_types_in $crate::bindings);
    };
}
