//! Ways to reach BuildKit's gRPC API, each giving a tonic [`Channel`]:
//!
//! - a standalone buildkitd on a unix socket, or on TCP (plain, or TLS with the daemon's CA and
//!   optionally a client certificate, as `buildctl --tlscacert --tlscert --tlskey`);
//! - Docker's built-in BuildKit, through the Engine API's `/grpc` route: an HTTP/1.1 request
//!   upgraded to h2c on the daemon's socket.
//!
//! And the two ways to open a session (BuildKit calling back into Kiln): `Control.Session` on
//! the channel (buildkitd), or Docker's `/session` route (dockerd).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::OciError;

/// TLS for a `tcp://` buildkitd: the CA that signed the daemon's certificate and, when the
/// daemon checks clients, this client's certificate and key (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name in the daemon's certificate, when it is not the host of the address.
    pub server_name: Option<String>,
}

/// Where the byte stream of a Docker API request goes.
#[derive(Debug, Clone)]
pub(crate) enum DockerSocket {
    Unix(PathBuf),
    Tcp(String),
}

/// A connection to the Docker daemon's socket, either kind.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

impl DockerSocket {
    async fn dial(&self) -> std::io::Result<Box<dyn Io>> {
        Ok(match self {
            DockerSocket::Unix(p) => Box::new(UnixStream::connect(p).await?),
            DockerSocket::Tcp(hp) => Box::new(TcpStream::connect(hp.as_str()).await?),
        })
    }

    fn describe(&self) -> String {
        match self {
            DockerSocket::Unix(p) => format!("docker+unix://{}", p.display()),
            DockerSocket::Tcp(hp) => format!("docker+tcp://{hp}"),
        }
    }

    /// An HTTP/1.1 request on a fresh connection, upgraded to h2c (`/grpc`, `/session`).
    pub(crate) async fn upgrade(
        &self,
        path: &str,
        headers: &[(&str, String)],
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, OciError> {
        let fail = |detail: String| OciError::Unreachable {
            addr: self.describe(),
            detail,
        };
        let stream = self
            .dial()
            .await
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(format!("HTTP handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut request = Request::post(path)
            .header("Host", "docker")
            .header("Connection", "Upgrade")
            .header("Upgrade", "h2c");
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| fail(format!("request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail(format!("POST {path}: {e}")))?;
        if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            return Err(fail(format!(
                "POST {path} answered {} instead of switching to h2c (does this daemon run BuildKit? dockerd 18.09 or newer is needed)",
                response.status()
            )));
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| fail(format!("upgrade of {path}: {e}")))?;
        Ok(TokioIo::new(upgraded))
    }
}

/// A channel to Docker's BuildKit through `/grpc`. Each (re)connect is a new upgraded request.
pub(crate) async fn docker_channel(
    socket: DockerSocket,
    session: String,
) -> Result<Channel, OciError> {
    let addr = socket.describe();
    let socket = Arc::new(socket);
    let connector = tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        let session = session.clone();
        async move {
            socket
                .upgrade("/grpc", &[("X-Docker-Expose-Session-Uuid", session)])
                .await
                .map(TokioIo::into_inner)
                .map_err(|e| std::io::Error::other(e.to_string()))
        }
    });
    Endpoint::from_static("http://docker.buildkit")
        .connect_with_connector(connector)
        .await
        .map_err(|e| OciError::Unreachable {
            addr,
            detail: e.to_string(),
        })
}

/// A channel to a buildkitd on a unix socket.
pub(crate) async fn unix_channel(path: &Path) -> Result<Channel, OciError> {
    let path = path.to_path_buf();
    let addr = format!("unix://{}", path.display());
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { UnixStream::connect(path).await.map(TokioIo::new) }
    });
    Endpoint::from_static("http://buildkitd.sock")
        .connect_with_connector(connector)
        .await
        .map_err(|e| OciError::Unreachable {
            addr,
            detail: e.to_string(),
        })
}

/// A channel to a buildkitd on TCP, plain or TLS.
pub(crate) async fn tcp_channel(
    host_port: &str,
    tls: Option<&TlsFiles>,
) -> Result<Channel, OciError> {
    let addr = format!("tcp://{host_port}");
    let unreachable = |detail: String| OciError::Unreachable {
        addr: addr.clone(),
        detail,
    };
    let endpoint = Endpoint::from_shared(format!("http://{host_port}")).map_err(|e| {
        OciError::InvalidAddr {
            addr: addr.clone(),
            hint: format!("{e}; write `tcp://host:port`"),
        }
    })?;
    let Some(tls) = tls else {
        return endpoint
            .connect()
            .await
            .map_err(|e| unreachable(e.to_string()));
    };
    let config = Arc::new(client_config(tls)?);
    let host = host_port
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(host_port)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = tls.server_name.clone().unwrap_or(host);
    let server_name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
        OciError::InvalidAddr {
            addr: addr.clone(),
            hint: format!("`{name}` is not a TLS server name: {e}"),
        }
    })?;
    let target = host_port.to_string();
    let connector = tower::service_fn(move |_: Uri| {
        let config = config.clone();
        let server_name = server_name.clone();
        let target = target.clone();
        async move {
            let tcp = TcpStream::connect(target.as_str()).await?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| unreachable(e.to_string()))
}

fn client_config(tls: &TlsFiles) -> Result<rustls::ClientConfig, OciError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, e: String| {
        OciError::Invalid(format!(
            "cannot read the TLS file `{}`: {e}; hint: give PEM files (`KILN_BUILDKIT_TLS_CA`, `KILN_BUILDKIT_TLS_CERT`, `KILN_BUILDKIT_TLS_KEY`)",
            path.display()
        ))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&tls.ca).map_err(|e| bad(&tls.ca, e.to_string()))? {
        let cert = cert.map_err(|e| bad(&tls.ca, e.to_string()))?;
        roots.add(cert).map_err(|e| bad(&tls.ca, e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OciError::Other(format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    let mut config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad(cert, e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(cert, e.to_string()))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad(cert, e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(OciError::Invalid(
                "a TLS client certificate needs both the certificate and its key; hint: set both `KILN_BUILDKIT_TLS_CERT` and `KILN_BUILDKIT_TLS_KEY`, or neither".to_string(),
            ));
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
