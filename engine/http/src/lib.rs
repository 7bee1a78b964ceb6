//! Kiln's outbound HTTP, for the host's `http` interface: one request at a time to hosts a
//! caller's grant check allows, with
//!
//! - **TLS verified** against the system's root certificates (`rustls-native-certs`, which also
//!   honours `SSL_CERT_FILE` and `SSL_CERT_DIR`); there is no switch to turn verification off;
//! - **redirects followed by hand**, each hop's `host:port` asked of the grant check before it is
//!   contacted, never from `https` to `http`, credentials dropped when the host changes, at
//!   most [`MAX_REDIRECTS`];
//! - **limits**: a deadline for the whole exchange (redirects included), a cap on the response
//!   body (the rest is not read; [`Response::truncated`] says so), a cap on the request body;
//! - **signatures**: the body's HMAC-SHA256 in a header, `sha256=<hex>` as GitHub sends it, with
//!   a key the caller read from a secret, so that the plugin asking never holds it.
//!
//! Knows nothing of plugins or steps: the grant check is a callback and credentials arrive as
//! header values already looked up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sha2::Sha256;

pub use hyper::Method;
pub use url::Url;

/// Most redirects one request may follow.
pub const MAX_REDIRECTS: u32 = 10;
/// Longest a request may take, redirects included.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest response body a caller may ask for.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Largest request body.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Longest a TCP connection (and TLS handshake's TCP part) may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The signature header when the caller names none (GitHub's is `X-Hub-Signature-256`).
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Kiln-Signature-256";

/// Headers a caller may not set: they describe the connection or the body framing, which the
/// client owns.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

/// Headers that carry credentials: dropped when a redirect leads to another origin.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// One request.
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    /// `http://` or `https://`, without credentials in it.
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Headers holding secrets (`Authorization`, an API key): never shown, and dropped on a
    /// redirect to another origin.
    pub secret_headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sign the body: `header: sha256=<hex of HMAC-SHA256(key, body)>`.
    pub signature: Option<Signing>,
    /// For the whole exchange, redirects included; at most [`MAX_TIMEOUT`].
    pub timeout: Duration,
    /// 0: a 3xx response is returned as it is.
    pub max_redirects: u32,
    /// The rest of a longer body is not read.
    pub max_response_bytes: usize,
}

/// How a body is signed.
#[derive(Clone)]
pub struct Signing {
    pub key: Vec<u8>,
    pub header: String,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field(
                "secret_headers",
                &self
                    .secret_headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("body_bytes", &self.body.len())
            .field("signed", &self.signature.is_some())
            .finish_non_exhaustive()
    }
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was longer than [`Request::max_response_bytes`]; the rest was not read.
    pub truncated: bool,
    /// The URL that answered (after redirects).
    pub url: String,
    /// Redirects followed.
    pub redirects: u32,
}

/// Why a request did not get a response. Messages name the URL (as given: a URL holding a
/// secret is masked by the caller's log masking) and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("`{url}` is not a usable URL: {reason}\n  hint: {hint}")]
    InvalidUrl {
        url: String,
        reason: String,
        hint: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// The grant check refused the URL, or a redirect target.
    #[error("{0}")]
    Denied(String),
    #[error(
        "`{url}` redirected more than {max} times\n  hint: call the final URL directly, or allow more redirects"
    )]
    TooManyRedirects { url: String, max: u32 },
    #[error(
        "`{method} {url}` timed out after {}\n  hint: the server is slow or not answering; the step is retried when it has `retry:`",
        humanize(*after)
    )]
    Timeout {
        method: String,
        url: String,
        after: Duration,
    },
    #[error(
        "the TLS connection to `{url}` failed: {reason}\n  hint: the server's certificate must be valid for its name and signed by a CA in the system's store (or `SSL_CERT_FILE`)"
    )]
    Tls { url: String, reason: String },
    #[error(
        "cannot reach `{url}`: {reason}\n  hint: check the host and port, and that the server is up; the step is retried when it has `retry:`"
    )]
    Unreachable { url: String, reason: String },
    #[error("`{method} {url}` failed: {reason}")]
    Failed {
        method: String,
        url: String,
        reason: String,
    },
}

impl HttpError {
    /// Whether trying again may help.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            HttpError::Timeout { .. } | HttpError::Unreachable { .. } | HttpError::Failed { .. }
        )
    }
}

fn humanize(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` keyed with `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `host:port` of a URL, the form `allow.net` lists (port 80/443 when the URL names none,
/// IPv6 addresses in brackets).
pub fn endpoint(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{}:{port}", host.to_ascii_lowercase()))
}

/// Parses a request URL: `http` or `https`, a host, no credentials.
pub fn parse_url(text: &str) -> Result<Url, HttpError> {
    let invalid = |reason: &str, hint: &str| HttpError::InvalidUrl {
        url: text.to_string(),
        reason: reason.to_string(),
        hint: hint.to_string(),
    };
    let mut url = Url::parse(text.trim()).map_err(|e| {
        invalid(
            &e.to_string(),
            "write an absolute URL such as `https://deployer.example.com/hooks/kiln`",
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            &format!("scheme `{}` is not supported", url.scheme()),
            "use `https://` (or `http://`)",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host", "write `https://host/path`"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(HttpError::InvalidUrl {
            url: redact(text),
            reason: "it contains credentials".into(),
            hint: "remove them from the URL and pass them with `auth:` from a secret".into(),
        });
    }
    url.set_fragment(None);
    Ok(url)
}

/// A URL with `user:password@` reduced to `***@`, for messages about input that was refused.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    url.to_string()
}

/// The grant check: given `host:port` and the URL, `Err` with the refusal (what to add to the
/// step) when it may not be contacted.
pub type Authorize<'a> = &'a (dyn Fn(&str, &Url) -> Result<(), String> + Sync);

type Inner = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A connection-pooling client. Cheap to share (`Arc`); one per process.
pub struct Client {
    inner: Inner,
    user_agent: HeaderValue,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client trusting the system's root certificates (or `SSL_CERT_FILE`/`SSL_CERT_DIR`),
    /// sending `User-Agent: <user_agent>` unless a request sets its own. Certificates that
    /// cannot be read are skipped; `Err` only when none at all can be loaded.
    pub fn new(user_agent: &str) -> Result<Client, String> {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            let why = loaded
                .errors
                .first()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "the store is empty".into());
            return Err(format!(
                "no trusted root certificates could be loaded ({why}); install `ca-certificates` or set `SSL_CERT_FILE`"
            ));
        }
        for e in &loaded.errors {
            tracing::debug!("skipped a root certificate source: {e}");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot configure TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(connector);
        let user_agent = HeaderValue::from_str(user_agent)
            .map_err(|_| format!("`{user_agent}` is not a valid user agent"))?;
        Ok(Client { inner, user_agent })
    }

    /// Sends `request`, following redirects the grant check allows. Must run inside a tokio
    /// runtime. Dropping the future abandons the request (and its connection).
    pub async fn send(
        &self,
        request: &Request,
        authorize: Authorize<'_>,
    ) -> Result<Response, HttpError> {
        let timeout = request.timeout.min(MAX_TIMEOUT);
        let started = Instant::now();
        let url = parse_url(&request.url)?;
        match tokio::time::timeout(timeout, self.exchange(request, url, authorize)).await {
            Ok(result) => {
                tracing::debug!(
                    method = %request.method,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    ok = result.is_ok(),
                    "http request"
                );
                result
            }
            Err(_) => Err(HttpError::Timeout {
                method: request.method.to_string(),
                url: request.url.clone(),
                after: timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        request: &Request,
        mut url: Url,
        authorize: Authorize<'_>,
    ) -> Result<Response, HttpError> {
        if request.body.len() > MAX_REQUEST_BYTES {
            return Err(HttpError::Invalid(format!(
                "the request body is {} bytes, more than the {} MiB allowed",
                request.body.len(),
                MAX_REQUEST_BYTES >> 20
            )));
        }
        let max_redirects = request.max_redirects.min(MAX_REDIRECTS);
        let mut headers = self.headers(request)?;
        let mut method = request.method.clone();
        let mut body = Bytes::from(request.body.clone());
        check(authorize, &url)?;
        let mut redirects = 0;
        loop {
            let response = self.once(&method, &url, &headers, body.clone()).await?;
            let status = response.status();
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_string);
            let follow = max_redirects > 0
                && matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
                && location.is_some();
            let Some(location) = location.filter(|_| follow) else {
                return read(response, &url, redirects, request.max_response_bytes).await;
            };
            drop(response);
            if redirects == max_redirects {
                return Err(HttpError::TooManyRedirects {
                    url: request.url.clone(),
                    max: max_redirects,
                });
            }
            let next = url.join(&location).map_err(|e| HttpError::Failed {
                method: method.to_string(),
                url: url.to_string(),
                reason: format!("it redirected to `{location}`, which is not a URL ({e})"),
            })?;
            let not_followed = |why: String| {
                HttpError::Denied(format!(
                    "`{url}` redirected to `{next}`, which was not followed: {why}"
                ))
            };
            if !matches!(next.scheme(), "http" | "https") {
                return Err(not_followed(format!(
                    "scheme `{}` is not supported",
                    next.scheme()
                )));
            }
            if url.scheme() == "https" && next.scheme() == "http" {
                return Err(not_followed(
                    "it leaves https for plain http\n  hint: call the https URL the server should have redirected to".into(),
                ));
            }
            authorize(&endpoint(&next).unwrap_or_default(), &next).map_err(not_followed)?;
            if url.origin() != next.origin() {
                for name in CREDENTIAL_HEADERS {
                    headers.remove(*name);
                }
                for (name, _) in &request.secret_headers {
                    headers.remove(name.as_str());
                }
            }
            // As browsers and curl do: 303 always, and 301/302 after a POST, continue as GET
            // without the body (and so without its signature).
            let to_get = status.as_u16() == 303
                || (matches!(status.as_u16(), 301 | 302) && method == Method::POST);
            if to_get && method != Method::HEAD {
                method = Method::GET;
                body = Bytes::new();
                headers.remove(hyper::header::CONTENT_TYPE);
                if let Some(s) = &request.signature {
                    headers.remove(s.header.as_str());
                }
            }
            tracing::debug!(from = %url, to = %next, "following a redirect");
            url = next;
            redirects += 1;
        }
    }

    /// The request's headers, checked, with the user agent and the signature.
    fn headers(&self, request: &Request) -> Result<HeaderMap, HttpError> {
        let mut map = HeaderMap::new();
        let signature_header = match &request.signature {
            Some(s) => Some(header_name(&s.header)?),
            None => None,
        };
        let mut add = |name: &str, value: &str, secret: bool| -> Result<(), HttpError> {
            let n = header_name(name)?;
            if RESERVED.contains(&n.as_str()) {
                return Err(HttpError::Invalid(format!(
                    "header `{name}` is set by the HTTP client itself; remove it"
                )));
            }
            if signature_header.as_ref() == Some(&n) {
                return Err(HttpError::Invalid(format!(
                    "header `{name}` is where the signature goes; remove it, or sign into another header"
                )));
            }
            if secret && map.contains_key(&n) {
                return Err(HttpError::Invalid(format!(
                    "header `{name}` is set twice: by the headers and by the credentials; keep one"
                )));
            }
            let mut v = HeaderValue::from_str(value).map_err(|_| {
                HttpError::Invalid(if secret {
                    format!("the secret for header `{name}` is not a valid header value (it has line breaks or control characters)")
                } else {
                    format!("the value of header `{name}` is not valid (it has line breaks or control characters)")
                })
            })?;
            v.set_sensitive(secret);
            map.append(n, v);
            Ok(())
        };
        for (name, value) in &request.headers {
            add(name, value, false)?;
        }
        for (name, value) in &request.secret_headers {
            add(name, value, true)?;
        }
        if !map.contains_key(hyper::header::USER_AGENT) {
            map.insert(hyper::header::USER_AGENT, self.user_agent.clone());
        }
        if let (Some(s), Some(name)) = (&request.signature, signature_header) {
            let value = HeaderValue::from_str(&signature(&s.key, &request.body))
                .map_err(|_| HttpError::Invalid("the signature is not a header value".into()))?;
            map.insert(name, value);
        }
        Ok(map)
    }

    async fn once(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, HttpError> {
        let mut req = hyper::Request::builder()
            .method(method.clone())
            .uri(url.as_str())
            .body(Full::new(body))
            .map_err(|e| HttpError::InvalidUrl {
                url: url.to_string(),
                reason: e.to_string(),
                hint: "write an absolute http(s) URL".into(),
            })?;
        *req.headers_mut() = headers.clone();
        self.inner
            .request(req)
            .await
            .map_err(|e| classify(e, method, url))
    }
}

fn header_name(name: &str) -> Result<HeaderName, HttpError> {
    HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| HttpError::Invalid(format!("`{name}` is not a valid header name")))
}

fn check(authorize: Authorize<'_>, url: &Url) -> Result<(), HttpError> {
    let endpoint = endpoint(url).ok_or_else(|| HttpError::InvalidUrl {
        url: url.to_string(),
        reason: "it has no host and port".into(),
        hint: "write `https://host/path`".into(),
    })?;
    authorize(&endpoint, url).map_err(HttpError::Denied)
}

/// Reads at most `max` bytes of the body.
async fn read(
    response: hyper::Response<hyper::body::Incoming>,
    url: &Url,
    redirects: u32,
    max: usize,
) -> Result<Response, HttpError> {
    let max = max.min(MAX_RESPONSE_BYTES);
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = response.into_body();
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| HttpError::Failed {
            method: "read".into(),
            url: url.to_string(),
            reason: format!("the response body broke off: {e}"),
        })?;
        if let Ok(data) = frame.into_data() {
            let room = max - out.len();
            if data.len() > room {
                out.extend_from_slice(&data[..room]);
                truncated = true;
                break;
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Response {
        status,
        headers,
        body: out,
        truncated,
        url: url.to_string(),
        redirects,
    })
}

/// Tells a TLS failure (certificate, handshake) and a connection failure apart from the rest.
fn classify(e: hyper_util::client::legacy::Error, method: &Method, url: &Url) -> HttpError {
    let mut chain = Vec::new();
    let mut tls = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push(s.to_string());
        // `io::Error::source` skips the error it wraps: look inside by hand (hyper-rustls wraps
        // tokio-rustls's `io::Error`, which wraps the `rustls::Error`, in another one).
        let mut inner: Option<&(dyn std::error::Error + 'static)> = Some(s);
        while let Some(i) = inner {
            if let Some(r) = i.downcast_ref::<rustls::Error>() {
                tls = Some(r.to_string());
                break;
            }
            inner = i
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|e| e as &(dyn std::error::Error + 'static));
        }
        source = s.source();
    }
    chain.dedup();
    let reason = if chain.is_empty() {
        e.to_string()
    } else {
        chain.join(": ")
    };
    if let Some(reason) = tls {
        return HttpError::Tls {
            url: url.to_string(),
            reason,
        };
    }
    if e.is_connect() {
        return HttpError::Unreachable {
            url: url.to_string(),
            reason,
        };
    }
    HttpError::Failed {
        method: method.to_string(),
        url: url.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_github_style_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn endpoints_use_the_schemes_default_port_and_bracket_ipv6() {
        let e = |u: &str| endpoint(&parse_url(u).unwrap()).unwrap();
        assert_eq!(
            e("https://Deployer.Example.com/hooks"),
            "deployer.example.com:443"
        );
        assert_eq!(e("http://127.0.0.1/x"), "127.0.0.1:80");
        assert_eq!(e("http://127.0.0.1:8080/x"), "127.0.0.1:8080");
        assert_eq!(e("https://[::1]:8443/"), "[::1]:8443");
    }

    #[test]
    fn urls_with_credentials_or_other_schemes_are_refused_without_echoing_the_password() {
        let e = parse_url("https://me:hunter2@example.com/x").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("credentials"), "{e}");
        assert!(parse_url("ftp://example.com/x").is_err());
        assert!(parse_url("/relative").is_err());
        assert!(parse_url("file:///etc/passwd").is_err());
    }

    #[test]
    fn a_request_never_shows_its_secret_headers_or_key() {
        let r = Request {
            method: Method::POST,
            url: "https://example.com".into(),
            headers: vec![],
            secret_headers: vec![("authorization".into(), "Bearer s3cret".into())],
            body: vec![],
            signature: Some(Signing {
                key: b"k3y-s3cret".to_vec(),
                header: DEFAULT_SIGNATURE_HEADER.into(),
            }),
            timeout: Duration::from_secs(1),
            max_redirects: 0,
            max_response_bytes: 0,
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
