//! The client side of a BuildKit session: the gRPC services BuildKit calls back while it
//! solves — the build context (`Upload`), secret mounts (`Secrets`), registry credentials
//! (`Auth`) and liveness (`Health`).
//!
//! In a session the roles are reversed: BuildKit is the gRPC client and Kiln serves, over one
//! byte stream — the `Control.Session` call of a standalone buildkitd, or the upgraded
//! connection of Docker's `/session` route.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard_buildkit_proto::health::health_check_response::ServingStatus;
use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bollard_buildkit_proto::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use bollard_buildkit_proto::moby::upload::v1::BytesMessage as UploadBytes;
use bollard_buildkit_proto::moby::upload::v1::upload_server::{Upload, UploadServer};
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::{Request, Response, Status, Streaming};

use crate::RegistryAuth;

/// Largest message either side sends: BuildKit's default gRPC limit.
pub(crate) const MAX_MESSAGE: usize = 16 << 20;
/// The build context goes up in pieces well under [`MAX_MESSAGE`].
const UPLOAD_CHUNK: usize = 256 << 10;

/// What one session offers BuildKit.
pub(crate) struct SessionData {
    /// Upload paths (`/ID`, the path of `http://buildkit-session/ID`) and their bytes.
    pub(crate) uploads: HashMap<String, Arc<Vec<u8>>>,
    /// Secret mounts by id.
    pub(crate) secrets: HashMap<String, Vec<u8>>,
    /// Credentials by registry host (`host[:port]`, `docker.io` for Docker Hub).
    pub(crate) auth: HashMap<String, RegistryAuth>,
}

impl SessionData {
    /// The gRPC methods served, announced to BuildKit when the session opens.
    pub(crate) fn methods(&self) -> Vec<&'static str> {
        vec![
            "/grpc.health.v1.Health/Check",
            "/moby.upload.v1.Upload/Pull",
            "/moby.buildkit.secrets.v1.Secrets/GetSecret",
            "/moby.filesync.v1.Auth/Credentials",
        ]
    }
}

/// Serves the session's services over `io` until BuildKit closes it (or the future is dropped).
pub(crate) async fn serve<IO>(io: IO, data: SessionData) -> Result<(), tonic::transport::Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let data = Arc::new(data);
    tonic::transport::Server::builder()
        .add_service(HealthServer::new(Healthy))
        .add_service(
            UploadServer::from_arc(data.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(SecretsServer::from_arc(data.clone()))
        .add_service(AuthServer::from_arc(data))
        .serve_with_incoming(futures_util::stream::iter([Ok::<_, std::io::Error>(
            SessionIo(io),
        )]))
        .await
}

/// An IO the tonic server accepts (it wants connection info; a session has none).
struct SessionIo<IO>(IO);

impl<IO> tonic::transport::server::Connected for SessionIo<IO> {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl<IO: AsyncRead + Unpin> AsyncRead for SessionIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SessionIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

struct Healthy;

#[tonic::async_trait]
impl Health for Healthy {
    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    type WatchStream =
        Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("health watch is not served"))
    }

    async fn list(
        &self,
        _: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("health list is not served"))
    }
}

#[tonic::async_trait]
impl Upload for SessionData {
    type PullStream = Pin<Box<dyn Stream<Item = Result<UploadBytes, Status>> + Send + 'static>>;

    async fn pull(
        &self,
        request: Request<Streaming<UploadBytes>>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let path = request
            .metadata()
            .get("urlpath")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let Some(data) = self.uploads.get(&path).cloned() else {
            return Err(Status::not_found(format!(
                "no upload `{path}` in this session"
            )));
        };
        let chunks = (0..data.len().div_ceil(UPLOAD_CHUNK)).map(move |i| {
            let end = ((i + 1) * UPLOAD_CHUNK).min(data.len());
            Ok(UploadBytes {
                data: data[i * UPLOAD_CHUNK..end].to_vec(),
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(chunks))))
    }
}

#[tonic::async_trait]
impl Secrets for SessionData {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = &request.get_ref().id;
        match self.secrets.get(id) {
            Some(data) => Ok(Response::new(GetSecretResponse { data: data.clone() })),
            None => Err(Status::not_found(format!(
                "secret `{id}` is not given to this build"
            ))),
        }
    }
}

/// BuildKit's name for Docker Hub's registry in credential lookups.
fn auth_key(host: &str) -> &str {
    match host {
        "registry-1.docker.io" | "index.docker.io" => "docker.io",
        other => other,
    }
}

#[tonic::async_trait]
impl Auth for SessionData {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = auth_key(&request.get_ref().host);
        let found = self
            .auth
            .get(host)
            .or_else(|| self.auth.get(request.get_ref().host.as_str()));
        let (username, secret) = match found {
            Some(RegistryAuth::Basic(c)) => (c.username.clone(), c.password.clone()),
            Some(RegistryAuth::IdentityToken(token)) => (String::new(), token.clone()),
            // Anonymous: an empty answer lets BuildKit go on without credentials.
            Some(RegistryAuth::Anonymous) | None => (String::new(), String::new()),
        };
        Ok(Response::new(CredentialsResponse { username, secret }))
    }

    async fn fetch_token(
        &self,
        _: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        // Not announced: BuildKit then fetches tokens itself with `credentials`.
        Err(Status::unimplemented("token fetching is left to BuildKit"))
    }

    async fn get_token_authority(
        &self,
        _: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }

    async fn verify_token_authority(
        &self,
        _: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }
}
