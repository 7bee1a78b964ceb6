//! The Docker driver: Docker's built-in BuildKit through the Engine API (`bollard`).
//!
//! A build sends the context tar to `POST /build` with BuilderVersion 2 and a BuildKit session,
//! and renders BuildKit's status updates as log lines. A build with secret mounts goes through
//! Docker's `/grpc` route instead (a direct BuildKit solve whose session serves the secrets),
//! because `/build` sessions carry no secrets; that route reports no live progress, only the
//! outcome. Pushes go through `POST /images/{name}/push`, one target at a time, and read the
//! digest the registry stored from the daemon's final status line.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{BuildInfoAux, PushImageInfo};
use bollard::query_parameters::{
    BuildImageOptions, BuilderVersion, PushImageOptions, TagImageOptions,
};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::progress::Renderer;
use crate::{
    BuildNetwork, BuildRequest, BuildkitAddr, Built, OciError, ProgressFn, PushRequest, Pushed,
    Reference, RegistryAuth, context,
};

/// How long one Engine API request may stay silent; builds stream, so this bounds stalls only.
const TIMEOUT_SECS: u64 = 3600;

pub(crate) struct DockerDriver {
    addr: BuildkitAddr,
    client: OnceCell<Docker>,
}

fn unreachable(addr: &BuildkitAddr, e: impl std::fmt::Display) -> OciError {
    OciError::Unreachable {
        addr: addr.to_string(),
        detail: e.to_string(),
    }
}

/// `name[:tag]` of a reference as Docker's image store names it, split for the tag API.
fn repo_and_tag(r: &Reference) -> (String, String) {
    (r.name(), r.tag_or_latest().to_string())
}

impl DockerDriver {
    pub(crate) fn new(addr: &BuildkitAddr) -> Result<DockerDriver, OciError> {
        Ok(DockerDriver {
            addr: addr.clone(),
            client: OnceCell::new(),
        })
    }

    /// Connects on first use and negotiates the API version (dockerd 20.10 speaks 1.41).
    async fn client(&self) -> Result<&Docker, OciError> {
        self.client
            .get_or_try_init(|| async {
                let docker = match &self.addr {
                    BuildkitAddr::DockerUnix(path) => Docker::connect_with_unix(
                        &path.to_string_lossy(),
                        TIMEOUT_SECS,
                        bollard::API_DEFAULT_VERSION,
                    ),
                    BuildkitAddr::DockerTcp(hp) => Docker::connect_with_http(
                        &format!("http://{hp}"),
                        TIMEOUT_SECS,
                        bollard::API_DEFAULT_VERSION,
                    ),
                    other => {
                        return Err(OciError::Invalid(format!(
                            "`{other}` is not a Docker address"
                        )));
                    }
                }
                .map_err(|e| unreachable(&self.addr, e))?;
                let docker =
                    tokio::time::timeout(Duration::from_secs(30), docker.negotiate_version())
                        .await
                        .map_err(|_| unreachable(&self.addr, "no answer within 30 s"))?
                        .map_err(|e| unreachable(&self.addr, e))?;
                Ok(docker)
            })
            .await
    }

    pub(crate) async fn build(
        &self,
        request: &BuildRequest,
        progress: ProgressFn<'_>,
    ) -> Result<Built, OciError> {
        let docker = self.client().await?;
        let (tar, dockerfile_name) = pack_context(request).await?;
        progress(&format!(
            "sending build context to {} ({})",
            self.addr,
            human_bytes(tar.len() as u64)
        ));
        let credentials = credentials(request);
        let image_id = if request.secrets.is_empty() {
            self.build_api(
                docker,
                request,
                tar,
                &dockerfile_name,
                credentials,
                progress,
            )
            .await?
        } else {
            self.build_grpc(
                docker,
                request,
                tar,
                &dockerfile_name,
                credentials,
                progress,
            )
            .await?
        };
        let mut tags = Vec::new();
        for tag in &request.tags {
            let (repo, t) = repo_and_tag(tag);
            docker
                .tag_image(
                    &image_id,
                    Some(TagImageOptions {
                        repo: Some(repo),
                        tag: Some(t),
                    }),
                )
                .await
                .map_err(|e| OciError::Other(format!("cannot tag the image as `{tag}`: {e}")))?;
            tags.push(tag.to_string());
        }
        let inspect = docker
            .inspect_image(&image_id)
            .await
            .map_err(|e| OciError::Other(format!("cannot inspect the built image: {e}")))?;
        let size = inspect.size.unwrap_or(0).max(0) as u64;
        Ok(Built {
            image_id,
            tags,
            size,
        })
    }

    /// `POST /build` with a BuildKit session: live progress.
    async fn build_api(
        &self,
        docker: &Docker,
        request: &BuildRequest,
        tar: Vec<u8>,
        dockerfile_name: &str,
        credentials: HashMap<String, DockerCredentials>,
        progress: ProgressFn<'_>,
    ) -> Result<String, OciError> {
        let mut build_args: HashMap<String, String> = request
            .build_args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut cache_from = Vec::new();
        for spec in &request.cache_from {
            match spec.registry_ref() {
                Some(r) => cache_from.push(r.to_string()),
                None => {
                    return Err(OciError::Unsupported {
                        what: format!("cache import of type `{}` with the docker driver", spec.kind),
                        hint: "Docker's BuildKit imports registry caches only (`type=registry,ref=…`, exported with `cache-to: type=inline`); use a standalone buildkitd for local caches".to_string(),
                    });
                }
            }
        }
        for spec in &request.cache_to {
            if spec.kind == "inline" {
                build_args.insert("BUILDKIT_INLINE_CACHE".to_string(), "1".to_string());
            } else {
                return Err(OciError::Unsupported {
                    what: format!("cache export of type `{}` with the docker driver", spec.kind),
                    hint: "Docker's BuildKit exports only an inline cache (`cache-to: type=inline`), pushed with the image; use a standalone buildkitd for registry or local cache exports".to_string(),
                });
            }
        }
        let options = BuildImageOptions {
            dockerfile: dockerfile_name.to_string(),
            t: request.tags.first().map(|t| t.to_string()),
            buildargs: Some(build_args),
            labels: Some(
                request
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            networkmode: Some(request.network.as_str().to_string()),
            platform: request.platform.clone().unwrap_or_default(),
            target: request.target.clone().unwrap_or_default(),
            nocache: request.no_cache,
            pull: request.pull.then(|| "1".to_string()),
            cachefrom: (!cache_from.is_empty()).then_some(cache_from),
            rm: true,
            forcerm: true,
            version: BuilderVersion::BuilderBuildKit,
            session: Some(session_id()),
            ..BuildImageOptions::default()
        };
        let body = bollard::body_full(tar.into());
        let mut stream = docker.build_image(options, Some(credentials), Some(body));
        let mut renderer = Renderer::new();
        let mut image_id = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(aux) = info.aux {
                        match aux {
                            BuildInfoAux::BuildKit(status) => {
                                renderer.update(&status, &mut |l| progress(l));
                            }
                            BuildInfoAux::Default(id) => {
                                if let Some(id) = id.id {
                                    image_id = Some(id);
                                }
                            }
                        }
                    }
                    if let Some(text) = info.stream {
                        for line in text.lines().filter(|l| !l.trim().is_empty()) {
                            progress(line);
                        }
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    renderer.finish(&mut |l| progress(l));
                    return Err(build_failed(&renderer, error));
                }
                Err(e) => {
                    renderer.finish(&mut |l| progress(l));
                    return Err(self.request_error(e));
                }
            }
        }
        renderer.finish(&mut |l| progress(l));
        image_id.ok_or_else(|| {
            OciError::Other("the daemon finished the build without naming the image".to_string())
        })
    }

    /// A direct BuildKit solve through Docker's `/grpc` route, whose session serves the
    /// secrets from files that live only for the build.
    async fn build_grpc(
        &self,
        docker: &Docker,
        request: &BuildRequest,
        tar: Vec<u8>,
        dockerfile_name: &str,
        credentials: HashMap<String, DockerCredentials>,
        progress: ProgressFn<'_>,
    ) -> Result<String, OciError> {
        use bollard::grpc::build::{
            ImageBuildFrontendOptions, ImageBuildLoadInput, ImageBuildNetworkMode,
            ImageBuildPlatform, SecretSource,
        };
        use bollard::grpc::driver::Build;

        if !request.cache_from.is_empty() || !request.cache_to.is_empty() {
            return Err(OciError::Unsupported {
                what: "cache import/export together with secret mounts on the docker driver"
                    .to_string(),
                hint: "drop `cache-from`/`cache-to` on this step, or use a standalone buildkitd"
                    .to_string(),
            });
        }
        let secret_dir = tempfile_dir()?;
        let mut options = ImageBuildFrontendOptions::builder()
            .dockerfile(Path::new(dockerfile_name))
            .nocache(request.no_cache)
            .pull(request.pull)
            .force_network_mode(&match request.network {
                BuildNetwork::None => ImageBuildNetworkMode::None,
                BuildNetwork::Host => ImageBuildNetworkMode::Host,
                BuildNetwork::Default => ImageBuildNetworkMode::Bridge,
            });
        for (k, v) in &request.build_args {
            options = options.buildarg(k, v);
        }
        for (k, v) in &request.labels {
            options = options.label(k, v);
        }
        if let Some(target) = &request.target {
            options = options.target(target);
        }
        if let Some(platform) = &request.platform {
            let mut parts = platform.split('/');
            let os = parts.next().unwrap_or_default().to_string();
            let architecture = parts.next().unwrap_or_default().to_string();
            let variant = parts.next().map(str::to_string);
            options = options.platforms(&ImageBuildPlatform {
                architecture,
                os,
                variant,
            });
        }
        for (i, secret) in request.secrets.iter().enumerate() {
            let path = secret_dir.path.join(format!("s{i}"));
            write_private(&path, &secret.value)?;
            options = options.set_secret(&secret.id, &SecretSource::File(path));
        }
        let name = match request.tags.first() {
            Some(t) => t.to_string(),
            None => format!("kiln.local/build:{}", session_id()),
        };
        let gz = gzip(&tar)?;
        progress(
            "building through Docker's BuildKit session (secret mounts: no live progress on this route)",
        );
        // bollard's gRPC session futures are not `Send`, so the solve runs on a blocking
        // thread of its own; dropping this future (timeout, cancel) drops `_cancel`, which ends
        // the solve there and closes the session.
        let driver = bollard::grpc::driver::moby::Moby::new(docker);
        let frontend = options.build();
        let runtime = tokio::runtime::Handle::current();
        let (_cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let solve_name = name.clone();
        let solve = tokio::task::spawn_blocking(move || {
            runtime.block_on(async move {
                let creds: HashMap<&str, DockerCredentials> = credentials
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                tokio::select! {
                    result = driver.docker_build(
                        &solve_name,
                        frontend,
                        ImageBuildLoadInput::Upload(gz.into()),
                        Some(creds),
                        None,
                    ) => Some(result),
                    _ = cancelled => None,
                }
            })
        });
        match solve.await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => {
                return Err(OciError::BuildFailed {
                    message: e.to_string(),
                });
            }
            Ok(None) => return Err(OciError::Other("the build was cancelled".to_string())),
            Err(e) => return Err(OciError::Other(format!("the build stopped: {e}"))),
        }
        drop(secret_dir);
        let inspect = docker
            .inspect_image(&name)
            .await
            .map_err(|e| OciError::Other(format!("cannot find the built image `{name}`: {e}")))?;
        if request.tags.is_empty() {
            // The temporary name served only to find the image.
            let _ = docker
                .remove_image(
                    &name,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
        progress("build finished");
        inspect
            .id
            .ok_or_else(|| OciError::Other("the built image has no id".to_string()))
    }

    fn request_error(&self, e: bollard::errors::Error) -> OciError {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code,
                message,
            } if status_code >= 500 => OciError::BuildFailed { message },
            E::DockerResponseServerError { message, .. } => OciError::Invalid(message),
            other => unreachable(&self.addr, other),
        }
    }

    pub(crate) async fn push(
        &self,
        request: &PushRequest,
        progress: ProgressFn<'_>,
    ) -> Result<Pushed, OciError> {
        let docker = self.client().await?;
        match docker.inspect_image(&request.image).await {
            Ok(_) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Err(OciError::ImageNotFound {
                    image: request.image.clone(),
                });
            }
            Err(e) => return Err(unreachable(&self.addr, e)),
        }
        let mut digest: Option<String> = None;
        let mut by_digest = Vec::new();
        let mut tagged = Vec::new();
        for target in &request.targets {
            let (repo, tag) = repo_and_tag(target);
            docker
                .tag_image(
                    &request.image,
                    Some(TagImageOptions {
                        repo: Some(repo.clone()),
                        tag: Some(tag.clone()),
                    }),
                )
                .await
                .map_err(|e| OciError::Other(format!("cannot name the image `{target}`: {e}")))?;
            progress(&format!("pushing {target}"));
            let server = target.registry().to_string();
            let creds = request.auth.to_docker_credentials(&server);
            let mut stream = docker.push_image(
                &repo,
                Some(PushImageOptions {
                    tag: Some(tag.clone()),
                    platform: None,
                }),
                Some(creds),
            );
            let mut pushed: Option<String> = None;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(info) => {
                        if let Some(d) = push_line(&info, progress) {
                            pushed = Some(d);
                        }
                    }
                    Err(bollard::errors::Error::DockerStreamError { error }) => {
                        return Err(push_error(target, &server, error));
                    }
                    Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                        return Err(push_error(target, &server, message));
                    }
                    Err(e) => return Err(unreachable(&self.addr, e)),
                }
            }
            let Some(d) = pushed else {
                return Err(OciError::PushFailed {
                    target: target.to_string(),
                    detail: "the daemon did not report the pushed digest".to_string(),
                });
            };
            by_digest.push(format!("{repo}@{d}"));
            tagged.push(target.to_string());
            digest.get_or_insert(d);
        }
        let digest = digest.unwrap_or_default();
        by_digest.dedup();
        by_digest.extend(tagged);
        Ok(Pushed {
            digest,
            references: by_digest,
        })
    }
}

/// Logs the interesting status lines of a push and returns the digest from the final one
/// (`TAG: digest: sha256:… size: N`).
fn push_line(info: &PushImageInfo, progress: ProgressFn<'_>) -> Option<String> {
    let status = info.status.as_deref()?;
    if status == "Pushing" || status == "Preparing" || status == "Waiting" {
        return None;
    }
    progress(status);
    let (_, rest) = status.split_once(": digest: ")?;
    let digest = rest.split_whitespace().next()?;
    digest.starts_with("sha256:").then(|| digest.to_string())
}

fn push_error(target: &Reference, server: &str, detail: String) -> OciError {
    let lower = detail.to_lowercase();
    if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth credentials")
        || lower.contains("denied")
    {
        OciError::Auth {
            registry: server.to_string(),
            detail,
        }
    } else if lower.contains("connection refused")
        || lower.contains("no such host")
        || lower.contains("i/o timeout")
        || lower.contains("server gave http response")
        || lower.contains("dial tcp")
        || lower.contains("eof")
    {
        OciError::RegistryUnreachable {
            registry: server.to_string(),
            detail,
        }
    } else {
        OciError::PushFailed {
            target: target.to_string(),
            detail,
        }
    }
}

fn build_failed(renderer: &Renderer, error: String) -> OciError {
    let message = match renderer.errors().last() {
        Some(vertex) if !error.contains(vertex.as_str()) => format!("{error} (in {vertex})"),
        _ => error,
    };
    OciError::BuildFailed { message }
}

/// Credentials for base-image pulls and registry caches, keyed the way the daemon looks them up.
fn credentials(request: &BuildRequest) -> HashMap<String, DockerCredentials> {
    request
        .registry_auth
        .iter()
        .filter(|(_, auth)| !matches!(auth, RegistryAuth::Anonymous))
        .map(|(host, auth)| (host.clone(), auth.to_docker_credentials(host)))
        .collect()
}

/// The context tar and the name the Dockerfile has inside it.
async fn pack_context(request: &BuildRequest) -> Result<(Vec<u8>, String), OciError> {
    let context_dir = request.context.clone();
    let dockerfile = request.dockerfile.clone();
    tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, String), OciError> {
        let contents = std::fs::read(&dockerfile).map_err(|e| {
            OciError::Invalid(format!(
                "cannot read the Dockerfile `{}`: {e}",
                dockerfile.display()
            ))
        })?;
        let name = dockerfile_name(&context_dir, &dockerfile, &contents);
        let mut tar = Vec::new();
        context::pack(&context_dir, Some((&name, &contents)), &mut tar)?;
        Ok((tar, name))
    })
    .await
    .map_err(|e| OciError::Other(format!("packing the context stopped: {e}")))?
}

/// The Dockerfile's path inside the context, or a name derived from its contents when it lives
/// outside (it is then sent beside the context under that name).
fn dockerfile_name(context: &Path, dockerfile: &Path, contents: &[u8]) -> String {
    if let (Ok(c), Ok(d)) = (context.canonicalize(), dockerfile.canonicalize())
        && let Ok(rel) = d.strip_prefix(&c)
        && let Some(s) = rel.to_str()
        && !s.is_empty()
    {
        return s.to_string();
    }
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(contents));
    format!(".kiln-Dockerfile-{}", &hash[..12])
}

fn session_id() -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    h.update(
        COUNTER
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    hex::encode(&h.finalize()[..12])
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// A private directory removed on drop (secret files for one build).
struct PrivateDir {
    path: PathBuf,
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn tempfile_dir() -> Result<PrivateDir, OciError> {
    use std::os::unix::fs::DirBuilderExt;
    let path = std::env::temp_dir().join(format!("kiln-secrets-{}", session_id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .map_err(|e| OciError::Other(format!("cannot create `{}`: {e}", path.display())))?;
    Ok(PrivateDir { path })
}

fn write_private(path: &Path, value: &[u8]) -> Result<(), OciError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| OciError::Other(format!("cannot write a secret file: {e}")))?;
    f.write_all(value)
        .map_err(|e| OciError::Other(format!("cannot write a secret file: {e}")))
}

fn gzip(data: &[u8]) -> Result<Vec<u8>, OciError> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data)
        .and_then(|_| enc.finish())
        .map_err(|e| OciError::Other(format!("cannot compress the context: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_read_from_the_final_push_status() {
        let mut lines = Vec::new();
        let info = PushImageInfo {
            status: Some("v1: digest: sha256:abc size: 527".to_string()),
            ..PushImageInfo::default()
        };
        let d = push_line(&info, &mut |l: &str| lines.push(l.to_string()));
        assert_eq!(d.as_deref(), Some("sha256:abc"));
        assert_eq!(lines, ["v1: digest: sha256:abc size: 527"]);
    }

    #[test]
    fn registry_messages_map_to_auth_and_unreachable_errors() {
        let target = Reference::parse("127.0.0.1:5000/app:1").unwrap();
        assert!(matches!(
            push_error(
                &target,
                "127.0.0.1:5000",
                "unauthorized: authentication required".into()
            ),
            OciError::Auth { .. }
        ));
        assert!(matches!(
            push_error(
                &target,
                "127.0.0.1:5000",
                "Get \"http://127.0.0.1:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused".into()
            ),
            OciError::RegistryUnreachable { .. }
        ));
        assert!(matches!(
            push_error(&target, "127.0.0.1:5000", "blob upload invalid".into()),
            OciError::PushFailed { .. }
        ));
    }

    #[test]
    fn a_dockerfile_outside_the_context_gets_a_content_name() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(ctx.join("sub")).unwrap();
        std::fs::write(ctx.join("sub/Dockerfile"), "FROM x").unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM x").unwrap();
        assert_eq!(
            dockerfile_name(&ctx, &ctx.join("sub/Dockerfile"), b"FROM x"),
            "sub/Dockerfile"
        );
        assert!(
            dockerfile_name(&ctx, &dir.path().join("Dockerfile"), b"FROM x")
                .starts_with(".kiln-Dockerfile-")
        );
    }
}
