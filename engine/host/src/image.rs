//! The host side of the `image` import: builds through the host's BuildKit and pushes to
//! registries, each call checked against the step's grants first.
//!
//! - The context and Dockerfile must be in the workspace (also through symlinks).
//! - Secret mounts and registry passwords name the step's secrets; values never reach the guest.
//! - Every registry a call talks to (push targets, registry caches) must be in `allow.net` as
//!   `host:port` (443 when the reference names no port).
//! - BuildKit's progress goes to the step log line by line; dropping the call (timeout, cancel)
//!   closes the connection, which stops the build in the daemon.

use std::sync::Arc;

use kiln_oci::auth::DockerConfig;
use kiln_oci::{
    BuildNetwork, BuildRequest, BuildSecret, Builder, CacheSpec, OciError, PushRequest, Reference,
    RegistryAuth,
};

use crate::LogStream;
use crate::access::{AccessError, StepAccess};
use crate::bindings::image::{self as wit, Host};
use crate::state::StepState;

/// What one step's image calls may use.
pub(crate) struct ImageScope {
    pub(crate) builder: Arc<Builder>,
    pub(crate) access: Arc<StepAccess>,
}

/// A WIT error of the `image` interface (also used by its registry calls, `registry.rs`).
pub(crate) fn error(kind: wit::ErrorKind, message: impl Into<String>) -> wit::Error {
    wit::Error {
        kind,
        message: message.into(),
    }
}

pub(crate) fn from_access(e: AccessError) -> wit::Error {
    match e {
        AccessError::Denied(m) => error(wit::ErrorKind::Denied, m),
        AccessError::Failed(m) => error(wit::ErrorKind::Failed, m),
    }
}

fn from_oci(e: OciError) -> wit::Error {
    use wit::ErrorKind as K;
    let kind = match &e {
        OciError::InvalidAddr { .. }
        | OciError::InvalidCache { .. }
        | OciError::Invalid(_)
        | OciError::Unsupported { .. }
        | OciError::DockerfileNotFound { .. }
        | OciError::ContextNotFound { .. }
        | OciError::Context(_) => K::Invalid,
        OciError::Unreachable { .. } | OciError::RegistryUnreachable { .. } => K::Unreachable,
        OciError::BuildFailed { .. } => K::BuildFailed,
        OciError::ImageNotFound { .. } => K::NotFound,
        OciError::Auth { .. } => K::Auth,
        OciError::PushFailed { .. } | OciError::Other(_) => K::Failed,
    };
    error(kind, e.to_string())
}

impl ImageScope {
    fn reference(&self, text: &str, what: &str) -> Result<Reference, wit::Error> {
        Reference::parse(text).map_err(|e| error(wit::ErrorKind::Invalid, format!("{what}: {e}")))
    }

    /// Resolves a registry login to credentials: secrets by name, or the host's Docker config.
    async fn auth(
        &self,
        auth: wit::RegistryAuth,
        registry: &str,
    ) -> Result<RegistryAuth, wit::Error> {
        match auth {
            wit::RegistryAuth::Anonymous => Ok(RegistryAuth::Anonymous),
            wit::RegistryAuth::Basic(b) => Ok(RegistryAuth::basic(
                b.username,
                self.access
                    .secret(&b.password_secret, "registry password")
                    .map_err(from_access)?,
            )),
            wit::RegistryAuth::DockerConfig => {
                let registry = registry.to_string();
                tokio::task::spawn_blocking(move || {
                    let config = DockerConfig::load_default()?;
                    config.lookup(&registry)
                })
                .await
                .map_err(|e| error(wit::ErrorKind::Failed, format!("credential lookup: {e}")))?
                .map_err(|e| error(wit::ErrorKind::Invalid, e.to_string()))
            }
        }
    }

    fn cache(&self, text: &str, export: bool) -> Result<CacheSpec, wit::Error> {
        let mut spec = CacheSpec::parse(text).map_err(from_oci)?;
        if let Some(r) = spec.registry_ref() {
            let r = self.reference(r, "cache reference")?;
            self.access
                .check_net(&r.registry_host(), "cache registry")
                .map_err(from_access)?;
        }
        for key in ["src", "dest"] {
            if let Some(dir) = spec.attrs.get(key) {
                if key == "dest" && export && !self.access.workspace_write {
                    return Err(error(
                        wit::ErrorKind::Denied,
                        "exporting a local cache writes to the workspace, which this step may only read\n  hint: add `allow: { workspace: write }` to the step",
                    ));
                }
                let host = self.access.host_path(dir).map_err(from_access)?;
                spec.attrs
                    .insert(key.to_string(), host.to_string_lossy().into_owned());
            }
        }
        Ok(spec)
    }
}

impl StepState {
    fn image_scope(&self) -> Result<&ImageScope, wit::Error> {
        self.image.as_ref().ok_or_else(|| {
            error(
                wit::ErrorKind::Denied,
                "image builds are not available here (only while a step runs, on a host with a BuildKit configured)",
            )
        })
    }
}

impl Host for StepState {
    async fn list_tags(
        &mut self,
        repository: String,
        auth: wit::RegistryAuth,
    ) -> Result<Vec<wit::TagInfo>, wit::Error> {
        match &self.registry {
            Some(scope) => scope.list_tags(repository, auth).await,
            None => Err(error(
                wit::ErrorKind::Denied,
                "registries are reachable only while a step runs",
            )),
        }
    }

    async fn delete_manifest(
        &mut self,
        repository: String,
        digest: String,
        auth: wit::RegistryAuth,
    ) -> Result<bool, wit::Error> {
        match &self.registry {
            Some(scope) => scope.delete_manifest(repository, digest, auth).await,
            None => Err(error(
                wit::ErrorKind::Denied,
                "registries are reachable only while a step runs",
            )),
        }
    }

    async fn build(&mut self, request: wit::BuildRequest) -> Result<wit::BuildResult, wit::Error> {
        let scope = self.image_scope()?;
        let access = &scope.access;
        let context = access.host_path(&request.context).map_err(from_access)?;
        let dockerfile = access.host_path(&request.dockerfile).map_err(from_access)?;
        let mut secrets = Vec::new();
        for s in &request.secrets {
            let value = access
                .secret(&s.secret, &format!("build secret `{}`", s.id))
                .map_err(from_access)?;
            secrets.push(BuildSecret {
                id: s.id.clone(),
                value: value.into_bytes(),
            });
        }
        let tags = request
            .tags
            .iter()
            .map(|t| scope.reference(t, "tag"))
            .collect::<Result<Vec<_>, _>>()?;
        let cache_from = request
            .cache_from
            .iter()
            .map(|c| scope.cache(c, false))
            .collect::<Result<Vec<_>, _>>()?;
        let cache_to = request
            .cache_to
            .iter()
            .map(|c| scope.cache(c, true))
            .collect::<Result<Vec<_>, _>>()?;
        if request.push {
            for t in &tags {
                access
                    .check_net(&t.registry_host(), "registry")
                    .map_err(from_access)?;
            }
        }
        let mut registry_auth = std::collections::BTreeMap::new();
        for login in request.logins {
            let auth = scope.auth(login.auth, &login.registry).await?;
            registry_auth.insert(login.registry, auth);
        }
        let build = BuildRequest {
            context,
            dockerfile,
            build_args: request.build_args.into_iter().collect(),
            target: request.target,
            labels: request.labels.into_iter().collect(),
            platform: request.platform,
            secrets,
            network: match request.network {
                wit::BuildNetwork::None => BuildNetwork::None,
                wit::BuildNetwork::Default => BuildNetwork::Default,
                wit::BuildNetwork::Host => BuildNetwork::Host,
            },
            cache_from,
            cache_to,
            tags,
            no_cache: request.no_cache,
            pull: request.pull,
            registry_auth,
            push: request.push,
        };
        let log = access.log.clone();
        let builder = scope.builder.clone();
        let mut progress = |line: &str| log.message(LogStream::Info, line);
        let built = builder
            .build(&build, &mut progress)
            .await
            .map_err(from_oci)?;
        Ok(wit::BuildResult {
            image_id: built.image_id,
            tags: built.tags,
            size: built.size,
            driver: builder.addr().driver().to_string(),
            pushed: built.pushed.map(|p| wit::PushResult {
                digest: p.digest,
                references: p.references,
            }),
        })
    }

    async fn push(&mut self, request: wit::PushRequest) -> Result<wit::PushResult, wit::Error> {
        let scope = self.image_scope()?;
        let targets = request
            .targets
            .iter()
            .map(|t| scope.reference(t, "push target"))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(first) = targets.first() else {
            return Err(error(
                wit::ErrorKind::Invalid,
                "nothing to push to: give at least one target reference",
            ));
        };
        for t in &targets {
            scope
                .access
                .check_net(&t.registry_host(), "registry")
                .map_err(from_access)?;
        }
        let auth = scope.auth(request.auth, first.registry()).await?;
        let push = PushRequest {
            image: request.image,
            targets,
            auth,
        };
        let log = scope.access.log.clone();
        let builder = scope.builder.clone();
        let mut progress = |line: &str| log.message(LogStream::Info, line);
        let pushed = builder.push(&push, &mut progress).await.map_err(from_oci)?;
        Ok(wit::PushResult {
            digest: pushed.digest,
            references: pushed.references,
        })
    }
}
