//! The client side of a BuildKit session: the gRPC services BuildKit calls back while it
//! solves — local directories (`FileSync`: the context and the Dockerfile's directory), secret
//! mounts (`Secrets`), registry credentials (`Auth`) and liveness (`Health`).
//!
//! In a session the roles are reversed: BuildKit is the gRPC client and Kiln serves, over one
//! byte stream — the `Control.Session` call of a standalone buildkitd, or the upgraded
//! connection of Docker's `/session` route.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard_buildkit_proto::fsutil::types::Packet;
use bollard_buildkit_proto::health::health_check_response::ServingStatus;
use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bollard_buildkit_proto::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::{FileSync, FileSyncServer};
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::{Request, Response, Status, Streaming};

use super::filesync::{self, DiffCopyStream, SyncedDir};
use crate::RegistryAuth;

/// Largest message either side sends: BuildKit's default gRPC limit.
pub(crate) const MAX_MESSAGE: usize = 16 << 20;

/// What one session offers BuildKit.
pub(crate) struct SessionData {
    /// Local directories by name (`context`, `dockerfile`), sent with `FileSync.DiffCopy`.
    pub(crate) dirs: HashMap<String, SyncedDir>,
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
            "/moby.filesync.v1.FileSync/DiffCopy",
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
        // Room for BuildKit's bursts of file requests and for file data in flight.
        .initial_connection_window_size(8 << 20)
        .initial_stream_window_size(4 << 20)
        .add_service(HealthServer::new(Healthy))
        .add_service(
            FileSyncServer::from_arc(data.clone())
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
impl FileSync for SessionData {
    type DiffCopyStream = DiffCopyStream;

    async fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        filesync::diff_copy(&self.dirs, request).await
    }

    type TarStreamStream = DiffCopyStream;

    async fn tar_stream(
        &self,
        _: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::TarStreamStream>, Status> {
        Err(Status::unimplemented(
            "tar streams are not served; use DiffCopy",
        ))
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
