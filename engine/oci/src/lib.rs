//! Kiln's OCI layer: build images with BuildKit and push them to registries.
//!
//! - [`Builder`]: one driver interface over the two ways to reach BuildKit, chosen by the
//!   address ([`BuildkitAddr`]): Docker's built-in BuildKit (`docker`, `docker+unix://…`,
//!   `docker+tcp://…`; images land in the daemon's store and are pushed through it), or a
//!   standalone `buildkitd` (`unix://…`, `tcp://…` plain or with TLS; images are pushed by
//!   BuildKit's exporter as it builds). Both speak BuildKit's own gRPC API (`buildkit`).
//! - [`context`]: `.dockerignore` patterns, matched as Docker and BuildKit match them.
//! - [`reference`]: image references (`host[:port]/path[:tag][@digest]`).
//! - [`auth`]: registry credentials from secrets or `~/.docker/config.json`.
//! - [`progress`]: BuildKit status updates rendered as plain log lines.
//! - [`distribution`]: a small blocking registry v2 client: list a repository's tags (digest,
//!   creation time) and delete manifests, for cleanups.
//!
//! Everything here is async and cancel-safe: dropping a build or push future closes the
//! connection, which makes the daemon stop the build.

pub mod auth;
mod buildkit;
mod buildkitd;
pub mod context;
pub mod distribution;
mod docker;
mod error;
pub mod progress;
pub mod reference;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub use crate::auth::{
    AuthError, CredentialHelper, Credentials, DockerConfig, HelperReply, ProcessHelper,
    RegistryAuth,
};
pub use crate::buildkit::TlsFiles;
pub use crate::context::{ContextError, DockerIgnore};
pub use crate::error::OciError;
pub use crate::reference::{Reference, ReferenceError};

/// Where BuildKit is, as the user wrote it in `buildkit.addr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildkitAddr {
    /// Docker's built-in BuildKit over the Engine API on a unix socket.
    DockerUnix(PathBuf),
    /// Docker's built-in BuildKit over the Engine API on TCP (plain HTTP).
    DockerTcp(String),
    /// A standalone `buildkitd` over gRPC on TCP (`host:port`).
    BuildkitdTcp(String),
    /// A standalone `buildkitd` on a unix socket.
    BuildkitdUnix(PathBuf),
}

impl BuildkitAddr {
    /// Parses `buildkit.addr`:
    /// `docker` (the `DOCKER_HOST` given, else `/var/run/docker.sock`), `docker+unix:///path`,
    /// `docker+tcp://host:port`, `unix:///path` and `tcp://host:port` (standalone buildkitd).
    pub fn parse(addr: &str, docker_host: Option<&str>) -> Result<BuildkitAddr, OciError> {
        let invalid = |hint: &str| OciError::InvalidAddr {
            addr: addr.to_string(),
            hint: hint.to_string(),
        };
        let addr = addr.trim();
        if addr == "docker" {
            return match docker_host {
                Some(host) if !host.is_empty() => {
                    if let Some(path) = host.strip_prefix("unix://") {
                        Ok(BuildkitAddr::DockerUnix(PathBuf::from(path)))
                    } else if let Some(hp) = host.strip_prefix("tcp://") {
                        Ok(BuildkitAddr::DockerTcp(hp.to_string()))
                    } else {
                        Err(invalid(
                            "`DOCKER_HOST` must be `unix:///path` or `tcp://host:port`",
                        ))
                    }
                }
                _ => Ok(BuildkitAddr::DockerUnix(PathBuf::from(
                    "/var/run/docker.sock",
                ))),
            };
        }
        let nonempty = |rest: &str, what: &str| {
            if rest.is_empty() {
                Err(invalid(what))
            } else {
                Ok(rest.to_string())
            }
        };
        if let Some(rest) = addr.strip_prefix("docker+unix://") {
            return Ok(BuildkitAddr::DockerUnix(PathBuf::from(nonempty(
                rest,
                "give the socket path, e.g. `docker+unix:///var/run/docker.sock`",
            )?)));
        }
        if let Some(rest) = addr.strip_prefix("docker+tcp://") {
            return Ok(BuildkitAddr::DockerTcp(nonempty(
                rest,
                "give host and port, e.g. `docker+tcp://127.0.0.1:2375`",
            )?));
        }
        if let Some(rest) = addr.strip_prefix("unix://") {
            return Ok(BuildkitAddr::BuildkitdUnix(PathBuf::from(nonempty(
                rest,
                "give the socket path, e.g. `unix:///run/buildkit/buildkitd.sock`",
            )?)));
        }
        if let Some(rest) = addr.strip_prefix("tcp://") {
            return Ok(BuildkitAddr::BuildkitdTcp(nonempty(
                rest,
                "give host and port, e.g. `tcp://127.0.0.1:1234`",
            )?));
        }
        Err(invalid(
            "use `docker`, `docker+unix:///path`, `docker+tcp://host:port` (Docker's BuildKit) or `unix:///path`, `tcp://host:port` (a standalone buildkitd)",
        ))
    }

    /// The driver's name, for logs and outputs.
    pub fn driver(&self) -> &'static str {
        match self {
            BuildkitAddr::DockerUnix(_) | BuildkitAddr::DockerTcp(_) => "docker",
            BuildkitAddr::BuildkitdTcp(_) | BuildkitAddr::BuildkitdUnix(_) => "buildkitd",
        }
    }
}

impl fmt::Display for BuildkitAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildkitAddr::DockerUnix(p) => write!(f, "docker+unix://{}", p.display()),
            BuildkitAddr::DockerTcp(hp) => write!(f, "docker+tcp://{hp}"),
            BuildkitAddr::BuildkitdTcp(hp) => write!(f, "tcp://{hp}"),
            BuildkitAddr::BuildkitdUnix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// The network BuildKit gives `RUN` instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildNetwork {
    /// No network at all (Kiln's default: hermetic and least privilege).
    #[default]
    None,
    /// The daemon's default network.
    Default,
    /// The daemon host's network.
    Host,
}

impl BuildNetwork {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildNetwork::None => "none",
            BuildNetwork::Default => "default",
            BuildNetwork::Host => "host",
        }
    }
}

/// A `RUN --mount=type=secret,id=ID` value. `Debug` never prints the value.
#[derive(Clone)]
pub struct BuildSecret {
    pub id: String,
    pub value: Vec<u8>,
}

impl fmt::Debug for BuildSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuildSecret({}: ***)", self.id)
    }
}

/// A cache import or export: `type=registry,ref=host/repo:cache`, `type=local,src=DIR`,
/// `type=inline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    pub kind: String,
    pub attrs: BTreeMap<String, String>,
}

impl CacheSpec {
    /// Parses buildx's `type=…,key=value` syntax; a bare reference means `type=registry,ref=…`.
    pub fn parse(text: &str) -> Result<CacheSpec, OciError> {
        let invalid = |hint: &str| OciError::InvalidCache {
            spec: text.to_string(),
            hint: hint.to_string(),
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid(
                "write e.g. `type=registry,ref=registry.example.com/app:cache`",
            ));
        }
        if !text.contains('=') {
            let mut attrs = BTreeMap::new();
            attrs.insert("ref".to_string(), text.to_string());
            return Ok(CacheSpec {
                kind: "registry".to_string(),
                attrs,
            });
        }
        let mut kind = None;
        let mut attrs = BTreeMap::new();
        for part in text.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(invalid("every part must be `key=value`"));
            };
            let (key, value) = (key.trim(), value.trim());
            if key == "type" {
                kind = Some(value.to_string());
            } else {
                attrs.insert(key.to_string(), value.to_string());
            }
        }
        let kind = kind.ok_or_else(|| invalid("say which cache: `type=registry|local|inline`"))?;
        match kind.as_str() {
            "registry" if !attrs.contains_key("ref") => {
                Err(invalid("a registry cache needs `ref=host/repo:tag`"))
            }
            "local" if !attrs.contains_key("src") && !attrs.contains_key("dest") => Err(invalid(
                "a local cache needs `src=DIR` (import) or `dest=DIR` (export)",
            )),
            "registry" | "local" | "inline" => Ok(CacheSpec { kind, attrs }),
            _ => Err(invalid(
                "supported cache types are `registry`, `local` and `inline`",
            )),
        }
    }

    /// The registry reference of a `type=registry` cache.
    pub fn registry_ref(&self) -> Option<&str> {
        (self.kind == "registry")
            .then(|| self.attrs.get("ref").map(String::as_str))
            .flatten()
    }
}

/// One image build. Paths are on the host (the caller maps and checks them).
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The context directory; `.dockerignore` in it applies.
    pub context: PathBuf,
    /// The Dockerfile (may be outside the context: it is sent beside it).
    pub dockerfile: PathBuf,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `os/arch[/variant]`; the daemon's own platform when `None`.
    pub platform: Option<String>,
    pub secrets: Vec<BuildSecret>,
    pub network: BuildNetwork,
    pub cache_from: Vec<CacheSpec>,
    pub cache_to: Vec<CacheSpec>,
    /// The names the image gets (the first is the one `push` uses by default).
    pub tags: Vec<Reference>,
    pub no_cache: bool,
    /// Always look for newer base images.
    pub pull: bool,
    /// Credentials by registry host, for base images, registry caches and pushes.
    pub registry_auth: BTreeMap<String, RegistryAuth>,
    /// Push every tag once built (all or nothing, as [`Builder::push`]).
    pub push: bool,
}

impl BuildRequest {
    /// The `dockerfile.v0` frontend's options for this request (besides the context and the
    /// Dockerfile's name), as BuildKit's gRPC API takes them.
    pub(crate) fn frontend_attrs(&self) -> std::collections::HashMap<String, String> {
        let mut attrs = std::collections::HashMap::new();
        for (k, v) in &self.build_args {
            attrs.insert(format!("build-arg:{k}"), v.clone());
        }
        for (k, v) in &self.labels {
            attrs.insert(format!("label:{k}"), v.clone());
        }
        if let Some(target) = &self.target {
            attrs.insert("target".to_string(), target.clone());
        }
        if let Some(platform) = &self.platform {
            attrs.insert("platform".to_string(), platform.clone());
        }
        match self.network {
            BuildNetwork::None => {
                attrs.insert("force-network-mode".to_string(), "none".to_string());
            }
            BuildNetwork::Host => {
                attrs.insert("force-network-mode".to_string(), "host".to_string());
            }
            BuildNetwork::Default => {}
        }
        if self.no_cache {
            attrs.insert("no-cache".to_string(), String::new());
        }
        if self.pull {
            attrs.insert("image-resolve-mode".to_string(), "pull".to_string());
        }
        // Docker's exporter writes an inline cache only when the frontend is told too (the
        // build argument `docker build --build-arg BUILDKIT_INLINE_CACHE=1` sets).
        if self.cache_to.iter().any(|c| c.kind == "inline") {
            attrs.insert(
                "build-arg:BUILDKIT_INLINE_CACHE".to_string(),
                "1".to_string(),
            );
        }
        attrs
    }
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The image's config digest (`sha256:…`), Docker's image id.
    pub image_id: String,
    pub tags: Vec<String>,
    /// Size of the image's layers in bytes, as the daemon reports it (0 when the driver keeps
    /// no image store to ask: a standalone buildkitd).
    pub size: u64,
    /// What the push did, when the request asked for one.
    pub pushed: Option<Pushed>,
}

/// One push: `image` (a local name or id) goes to every target reference.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub image: String,
    pub targets: Vec<Reference>,
    pub auth: RegistryAuth,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest digest the registry stored (`sha256:…`).
    pub digest: String,
    /// `repo@digest` first, then each `repo:tag` pushed.
    pub references: Vec<String>,
}

/// A sink for progress lines (without the trailing newline).
pub type ProgressFn<'a> = &'a mut (dyn FnMut(&str) + Send);

/// A BuildKit behind one of the drivers.
pub struct Builder {
    addr: BuildkitAddr,
    driver: Driver,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder").field("addr", &self.addr).finish()
    }
}

enum Driver {
    Docker(docker::DockerDriver),
    Buildkitd(buildkitd::BuildkitdDriver),
}

impl Builder {
    /// Connects lazily: nothing is dialled until the first build or push.
    pub fn new(addr: BuildkitAddr) -> Result<Builder, OciError> {
        Builder::with_tls(addr, None)
    }

    /// As [`Builder::new`], with TLS files for a `tcp://` buildkitd (refused for other
    /// addresses, where they would be silently unused).
    pub fn with_tls(addr: BuildkitAddr, tls: Option<TlsFiles>) -> Result<Builder, OciError> {
        let driver = match &addr {
            BuildkitAddr::DockerUnix(_) | BuildkitAddr::DockerTcp(_) if tls.is_some() => {
                return Err(OciError::InvalidAddr {
                    addr: addr.to_string(),
                    hint: "TLS files apply to a `tcp://` buildkitd only; unset `KILN_BUILDKIT_TLS_*` or point `KILN_BUILDKIT_ADDR` at `tcp://host:port`".to_string(),
                });
            }
            BuildkitAddr::DockerUnix(_) | BuildkitAddr::DockerTcp(_) => {
                Driver::Docker(docker::DockerDriver::new(&addr)?)
            }
            BuildkitAddr::BuildkitdUnix(_) if tls.is_some() => {
                return Err(OciError::InvalidAddr {
                    addr: addr.to_string(),
                    hint: "TLS files apply to a `tcp://` buildkitd only; a unix socket is protected by its file permissions".to_string(),
                });
            }
            BuildkitAddr::BuildkitdUnix(path) => Driver::Buildkitd(
                buildkitd::BuildkitdDriver::new(addr.clone(), buildkit::Target::Unix(path.clone())),
            ),
            BuildkitAddr::BuildkitdTcp(hp) => Driver::Buildkitd(buildkitd::BuildkitdDriver::new(
                addr.clone(),
                buildkit::Target::Tcp {
                    host_port: hp.clone(),
                    tls,
                },
            )),
        };
        Ok(Builder { addr, driver })
    }

    pub fn addr(&self) -> &BuildkitAddr {
        &self.addr
    }

    /// Builds the image and names it with every tag. Progress arrives line by line.
    pub async fn build(
        &self,
        request: &BuildRequest,
        progress: ProgressFn<'_>,
    ) -> Result<Built, OciError> {
        if !request.dockerfile.is_file() {
            return Err(OciError::DockerfileNotFound {
                path: request.dockerfile.clone(),
            });
        }
        if !request.context.is_dir() {
            return Err(OciError::ContextNotFound {
                path: request.context.clone(),
            });
        }
        if request.push && request.tags.is_empty() {
            return Err(OciError::Invalid(
                "`push` needs at least one tag to push to; hint: set `tags:`".to_string(),
            ));
        }
        match &self.driver {
            Driver::Docker(d) => d.build(request, progress).await,
            Driver::Buildkitd(d) => d.build(request, progress).await,
        }
    }

    /// Pushes a built image to every target; all or nothing is reported as pushed.
    pub async fn push(
        &self,
        request: &PushRequest,
        progress: ProgressFn<'_>,
    ) -> Result<Pushed, OciError> {
        if request.targets.is_empty() {
            return Err(OciError::Invalid(
                "nothing to push to: give at least one target reference".to_string(),
            ));
        }
        match &self.driver {
            Driver::Docker(d) => d.push(request, progress).await,
            Driver::Buildkitd(_) => Err(OciError::Unsupported {
                what: format!("a separate push on a standalone buildkitd (`{}`)", self.addr),
                hint: "buildkitd keeps no image store to push from: set `push: true` on the `build` step, which pushes as it exports".to_string(),
            }),
        }
    }
}
