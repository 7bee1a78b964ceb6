//! A BuildKit client over its own gRPC API (`moby.buildkit.v1.Control`): the driver of a
//! standalone buildkitd, and the route Docker's built-in BuildKit takes for builds the Engine
//! API's `POST /build` cannot express (secret mounts).
//!
//! One build is one solve of the `dockerfile.v0` frontend:
//! 1. a session is opened (BuildKit calls back into it for the context, secrets and registry
//!    credentials, see [`session`]);
//! 2. `Control.Solve` runs the build while `Control.Status` streams its progress, rendered as
//!    plain lines ([`crate::progress`]);
//! 3. the solve's response names what the exporter made (`containerimage.digest`).
//!
//! Dropping the future closes the connections, which cancels the solve in the daemon.

pub(crate) mod connect;
mod filesync;
pub(crate) mod session;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::{
    BytesMessage, CacheOptions, CacheOptionsEntry, SolveRequest, StatusRequest, StatusResponse,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::progress::Renderer;
use crate::{BuildRequest, CacheSpec, OciError, ProgressFn, RegistryAuth};

use connect::DockerSocket;
pub use connect::TlsFiles;
use filesync::SyncedDir;
use session::{MAX_MESSAGE, SessionData};

/// Where a BuildKit gRPC API is.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// Docker's built-in BuildKit (`/grpc` for the API, `/session` for sessions).
    Docker(DockerSocket),
    /// A standalone buildkitd on a unix socket.
    Unix(PathBuf),
    /// A standalone buildkitd on TCP.
    Tcp {
        host_port: String,
        tls: Option<TlsFiles>,
    },
}

/// One solve of the Dockerfile frontend.
pub(crate) struct Solve {
    /// The build context, offered to BuildKit as the local directory `context`.
    pub context: SyncedDir,
    /// The Dockerfile's directory (the local `dockerfile`) and its file name there.
    pub dockerfile_dir: PathBuf,
    pub dockerfile: String,
    /// Frontend options besides the context and the Dockerfile's name (`build-arg:X`, ...).
    pub frontend_attrs: HashMap<String, String>,
    /// `moby` (Docker's image store), `image` (a registry or buildkitd's store).
    pub exporter: String,
    pub exporter_attrs: HashMap<String, String>,
    pub cache_from: Vec<CacheSpec>,
    pub cache_to: Vec<CacheSpec>,
    pub secrets: HashMap<String, Vec<u8>>,
    pub auth: HashMap<String, RegistryAuth>,
}

impl Solve {
    /// The solve of `request`, exporting with `exporter`. Reads the context's `.dockerignore`
    /// (a malformed pattern is an error naming its line).
    pub(crate) async fn new(
        request: &BuildRequest,
        exporter: &str,
        exporter_attrs: HashMap<String, String>,
    ) -> Result<Solve, OciError> {
        let context = request.context.clone();
        let ignore_file = context.join(".dockerignore");
        let ignore = match tokio::fs::read_to_string(&ignore_file).await {
            Ok(text) => Some(crate::context::DockerIgnore::parse(&text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(OciError::Invalid(format!(
                    "cannot read `{}`: {e}",
                    ignore_file.display()
                )));
            }
        };
        let dockerfile = request.dockerfile.clone();
        let name = dockerfile
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                OciError::Invalid(format!(
                    "`{}` does not name a Dockerfile",
                    dockerfile.display()
                ))
            })?
            .to_string();
        let dockerfile_dir = dockerfile
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Solve {
            context: SyncedDir {
                path: context,
                ignore,
            },
            dockerfile_dir,
            dockerfile: name,
            frontend_attrs: request.frontend_attrs(),
            exporter: exporter.to_string(),
            exporter_attrs,
            cache_from: request.cache_from.clone(),
            cache_to: request.cache_to.clone(),
            secrets: request
                .secrets
                .iter()
                .map(|s| (s.id.clone(), s.value.clone()))
                .collect(),
            auth: request
                .registry_auth
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// A key BuildKit keeps the last transfer of these directories under, so an unchanged
    /// context is not sent again (as `buildctl` derives its shared key from the paths).
    fn shared_key(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.context.path.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(self.dockerfile_dir.to_string_lossy().as_bytes());
        hex::encode(&h.finalize()[..16])
    }
}

/// A random id in BuildKit's style (25 base-36 characters).
pub(crate) fn new_id() -> String {
    use sha2::Digest;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = sha2::Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    h.update(
        COUNTER
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    let digest = h.finalize();
    let mut n = u128::from_le_bytes(digest[..16].try_into().unwrap_or_default());
    let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(25);
    for _ in 0..25 {
        out.push(char::from(alphabet[(n % 36) as usize]));
        n /= 36;
    }
    out
}

fn entries(specs: &[CacheSpec]) -> Vec<CacheOptionsEntry> {
    specs
        .iter()
        .map(|s| CacheOptionsEntry {
            r#type: s.kind.clone(),
            attrs: s
                .attrs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
        .collect()
}

/// `cache-imports` for the frontend, which reads image configs of registry caches itself.
fn cache_imports_attr(specs: &[CacheSpec]) -> String {
    let list: Vec<serde_json::Value> = specs
        .iter()
        .map(|s| serde_json::json!({ "Type": s.kind, "Attrs": s.attrs }))
        .collect();
    serde_json::Value::Array(list).to_string()
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Docker(s) => match s {
                DockerSocket::Unix(p) => format!("docker+unix://{}", p.display()),
                DockerSocket::Tcp(hp) => format!("docker+tcp://{hp}"),
            },
            Target::Unix(p) => format!("unix://{}", p.display()),
            Target::Tcp { host_port, .. } => format!("tcp://{host_port}"),
        }
    }

    async fn channel(&self, session_id: &str) -> Result<Channel, OciError> {
        match self {
            Target::Docker(socket) => {
                connect::docker_channel(socket.clone(), session_id.to_string()).await
            }
            Target::Unix(path) => connect::unix_channel(path).await,
            Target::Tcp { host_port, tls } => connect::tcp_channel(host_port, tls.as_ref()).await,
        }
    }

    /// Opens the session `id` serving `data`; the returned task ends with the session.
    async fn open_session(
        &self,
        control: &mut ControlClient<Channel>,
        id: &str,
        key: &str,
        data: SessionData,
    ) -> Result<tokio::task::JoinHandle<()>, OciError> {
        let methods = data.methods();
        let key = key.to_string();
        let headers: Vec<(&str, String)> = [
            ("X-Docker-Expose-Session-Uuid", id.to_string()),
            ("X-Docker-Expose-Session-Name", "kiln".to_string()),
            ("X-Docker-Expose-Session-Sharedkey", key),
        ]
        .into_iter()
        .chain(
            methods
                .iter()
                .map(|m| ("X-Docker-Expose-Session-Grpc-Method", m.to_string())),
        )
        .collect();
        if let Target::Docker(socket) = self {
            // dockerd hands sessions to its BuildKit from the `/session` route.
            let io = socket.upgrade("/session", &headers).await?;
            return Ok(tokio::spawn(async move {
                if let Err(e) = session::serve(io, data).await {
                    tracing::debug!(error = %e, "buildkit session ended");
                }
            }));
        }
        // buildkitd: the session is a `Control.Session` stream carrying HTTP/2 the other way.
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (their_read, mut their_write) = tokio::io::split(theirs);
        let outgoing =
            tokio_util::io::ReaderStream::new(their_read).filter_map(|chunk| async move {
                chunk.ok().map(|b| BytesMessage { data: b.to_vec() })
            });
        let mut request = tonic::Request::new(outgoing);
        for (name, value) in &headers {
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|e| OciError::Other(format!("session header `{name}`: {e}")))?;
            request.metadata_mut().append(
                tonic::metadata::AsciiMetadataKey::from_static(lower(name)),
                value,
            );
        }
        let server = tokio::spawn(async move {
            if let Err(e) = session::serve(ours, data).await {
                tracing::debug!(error = %e, "buildkit session ended");
            }
        });
        let mut incoming = control
            .session(request)
            .await
            .map_err(|e| OciError::Unreachable {
                addr: self.describe(),
                detail: format!("cannot open a session: {}", e.message()),
            })?
            .into_inner();
        Ok(tokio::spawn(async move {
            while let Some(Ok(msg)) = incoming.next().await {
                if their_write.write_all(&msg.data).await.is_err() {
                    break;
                }
            }
            server.abort();
        }))
    }

    /// Runs the solve, streaming progress; returns the exporter's response.
    pub(crate) async fn solve(
        &self,
        solve: Solve,
        progress: ProgressFn<'_>,
    ) -> Result<HashMap<String, String>, OciError> {
        let session_id = new_id();
        let build_ref = new_id();
        let channel = self.channel(&session_id).await?;
        let mut control = ControlClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);

        let shared_key = solve.shared_key();
        let mut frontend_attrs = solve.frontend_attrs;
        frontend_attrs.insert("filename".to_string(), solve.dockerfile.clone());
        if !solve.cache_from.is_empty() {
            frontend_attrs.insert(
                "cache-imports".to_string(),
                cache_imports_attr(&solve.cache_from),
            );
        }
        let data = SessionData {
            dirs: HashMap::from([
                ("context".to_string(), solve.context),
                (
                    "dockerfile".to_string(),
                    SyncedDir {
                        path: solve.dockerfile_dir,
                        ignore: None,
                    },
                ),
            ]),
            secrets: solve.secrets,
            auth: solve.auth,
        };
        let session = self
            .open_session(&mut control, &session_id, &shared_key, data)
            .await?;
        let _session = AbortOnDrop(session);

        // Progress: `Status` follows the job `build_ref` until it ends.
        let (tx, mut rx) = mpsc::unbounded_channel::<StatusResponse>();
        let mut status_client = control.clone();
        let status_ref = build_ref.clone();
        let status = tokio::spawn(async move {
            let Ok(stream) = status_client
                .status(StatusRequest { r#ref: status_ref })
                .await
            else {
                return;
            };
            let mut stream = stream.into_inner();
            while let Some(Ok(update)) = stream.next().await {
                if tx.send(update).is_err() {
                    break;
                }
            }
        });
        let _status = AbortOnDrop(status);

        let request = SolveRequest {
            r#ref: build_ref,
            definition: None,
            exporter_deprecated: solve.exporter,
            exporter_attrs_deprecated: solve.exporter_attrs,
            session: session_id,
            frontend: "dockerfile.v0".to_string(),
            frontend_attrs,
            cache: Some(CacheOptions {
                export_ref_deprecated: String::new(),
                import_refs_deprecated: Vec::new(),
                export_attrs_deprecated: HashMap::new(),
                exports: entries(&solve.cache_to),
                imports: entries(&solve.cache_from),
            }),
            entitlements: Vec::new(),
            frontend_inputs: HashMap::new(),
            internal: false,
            source_policy: None,
            exporters: Vec::new(),
            enable_session_exporter: false,
            source_policy_session: String::new(),
        };
        let mut renderer = Renderer::new();
        let result = {
            let solving = control.solve(request);
            tokio::pin!(solving);
            loop {
                tokio::select! {
                    result = &mut solving => break result,
                    Some(update) = rx.recv() => renderer.update(&update, &mut |l| progress(l)),
                }
            }
        };
        // The last updates (the failing step's output) may still be on their way.
        let drain = async {
            while let Some(update) = rx.recv().await {
                renderer.update(&update, &mut |l| progress(l));
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        renderer.finish(&mut |l| progress(l));
        match result {
            Ok(response) => Ok(response.into_inner().exporter_response),
            Err(status) => Err(self.solve_error(&renderer, status)),
        }
    }

    fn solve_error(&self, renderer: &Renderer, status: tonic::Status) -> OciError {
        use tonic::Code;
        let message = status.message().to_string();
        match status.code() {
            Code::Unavailable if renderer.errors().is_empty() => OciError::Unreachable {
                addr: self.describe(),
                detail: message,
            },
            Code::Unimplemented => OciError::Unsupported {
                what: format!("this request on `{}`", self.describe()),
                hint: message,
            },
            _ => {
                let lower = message.to_lowercase();
                if lower.contains("not supported") || lower.contains("unsupported") {
                    return OciError::Unsupported {
                        what: format!("this build on `{}`", self.describe()),
                        hint: message,
                    };
                }
                match renderer.errors().last() {
                    Some(vertex) if !message.contains(vertex.as_str()) => OciError::BuildFailed {
                        message: format!("{message} (in {vertex})"),
                    },
                    _ => OciError::BuildFailed { message },
                }
            }
        }
    }
}

/// gRPC metadata keys are lowercase.
fn lower(name: &str) -> &'static str {
    match name {
        "X-Docker-Expose-Session-Uuid" => "x-docker-expose-session-uuid",
        "X-Docker-Expose-Session-Name" => "x-docker-expose-session-name",
        "X-Docker-Expose-Session-Sharedkey" => "x-docker-expose-session-sharedkey",
        _ => "x-docker-expose-session-grpc-method",
    }
}

/// Aborts a spawned task when dropped (a cancelled build stops its session and status reader).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
