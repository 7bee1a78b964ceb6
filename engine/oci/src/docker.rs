//! The Docker driver: Docker's built-in BuildKit, and the daemon's image store and pushes.
//!
//! A build is a BuildKit solve over the daemon's `/grpc` and `/session` routes (see
//! [`crate::buildkit`]; the route buildx's docker driver takes), exported by the `moby` exporter
//! into the daemon's image store under every tag. The Engine API (`bollard`) does the rest:
//! inspecting the image, and pushes through `POST /images/{name}/push`, one target at a time,
//! reading the digest the registry stored from the daemon's final status line.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::PushImageInfo;
use bollard::query_parameters::{PushImageOptions, TagImageOptions};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::buildkit::{self, Target, connect::DockerSocket};
use crate::{
    BuildRequest, BuildkitAddr, Built, OciError, ProgressFn, PushRequest, Pushed, Reference,
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

    /// Builds through Docker's BuildKit over its gRPC API (`/grpc` and `/session`, the route
    /// buildx's docker driver takes), so every build streams live progress and secret mounts
    /// are served from memory. The `moby` exporter stores the image in the daemon under every
    /// tag; with `push`, each tag is then pushed through the daemon.
    pub(crate) async fn build(
        &self,
        request: &BuildRequest,
        progress: ProgressFn<'_>,
    ) -> Result<Built, OciError> {
        check_caches(request)?;
        let docker = self.client().await?;
        let socket = match &self.addr {
            BuildkitAddr::DockerUnix(p) => DockerSocket::Unix(p.clone()),
            BuildkitAddr::DockerTcp(hp) => DockerSocket::Tcp(hp.clone()),
            other => {
                return Err(OciError::Invalid(format!(
                    "`{other}` is not a Docker address"
                )));
            }
        };
        progress(&format!("building on {}", self.addr));
        let tags: Vec<String> = request.tags.iter().map(|t| t.to_string()).collect();
        let mut exporter_attrs = HashMap::new();
        if !tags.is_empty() {
            exporter_attrs.insert("name".to_string(), tags.join(","));
        }
        let solve = buildkit::Solve::new(request, "moby", exporter_attrs).await?;
        let response = Target::Docker(socket).solve(solve, progress).await?;
        let image_id = match response.get("containerimage.digest") {
            Some(id) => id.clone(),
            None => match request.tags.first() {
                Some(tag) => docker
                    .inspect_image(&tag.to_string())
                    .await
                    .ok()
                    .and_then(|i| i.id)
                    .ok_or_else(|| {
                        OciError::Other(format!("cannot find the built image `{tag}`"))
                    })?,
                None => {
                    return Err(OciError::Other(
                        "BuildKit did not name the image it built".to_string(),
                    ));
                }
            },
        };
        let inspect = docker
            .inspect_image(&image_id)
            .await
            .map_err(|e| OciError::Other(format!("cannot inspect the built image: {e}")))?;
        let size = inspect.size.unwrap_or(0).max(0) as u64;
        let pushed = if request.push {
            let auth = request
                .tags
                .first()
                .and_then(|t| request.registry_auth.get(t.registry()))
                .cloned()
                .unwrap_or_default();
            let push = PushRequest {
                image: image_id.clone(),
                targets: request.tags.clone(),
                auth,
            };
            Some(self.push(&push, progress).await?)
        } else {
            None
        };
        Ok(Built {
            image_id,
            tags,
            size,
            pushed,
        })
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

/// Docker's BuildKit imports registry caches and exports only inline ones: its image store
/// has no cache exporters (`unknown cache exporter`), and local caches need a content store
/// in the client's session. Refused before anything is sent.
fn check_caches(request: &BuildRequest) -> Result<(), OciError> {
    for spec in &request.cache_from {
        if spec.kind != "registry" {
            return Err(OciError::Unsupported {
                what: format!("cache import of type `{}` on Docker's BuildKit", spec.kind),
                hint: "import registry caches (`type=registry,ref=…`, e.g. an image pushed with `cache-to: type=inline`)".to_string(),
            });
        }
    }
    for spec in &request.cache_to {
        if spec.kind != "inline" {
            return Err(OciError::Unsupported {
                what: format!("cache export of type `{}` on Docker's BuildKit", spec.kind),
                hint: "Docker's built-in BuildKit exports only `type=inline` (the cache travels with the pushed image); point `KILN_BUILDKIT_ADDR` at a standalone buildkitd for `type=registry` exports".to_string(),
            });
        }
    }
    Ok(())
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
}
