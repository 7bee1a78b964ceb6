//! The host side of the `http` import: each request is checked against the step's grants, then
//! sent by [`kiln_http`]. The URL's `host:port`, and every redirect target's, must be in
//! `allow.net`; credentials and signing keys are read from the step's secrets by name here, so
//! their values never cross into the guest. Only plugins that declare the `http` capability may
//! send.
//!
//! The step's deadline applies: when it passes, the call's future is dropped, which abandons
//! the request and its connection.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use kiln_http::{Client, HttpError, Method, Signing};

use crate::LogStream;
use crate::access::{AccessError, StepAccess};
use crate::bindings::http::{self as wit, Host};
use crate::state::StepState;

/// Default deadline of one request, redirects included.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of redirects followed.
const DEFAULT_REDIRECTS: u32 = 5;
/// Default cap on the response body.
const DEFAULT_RESPONSE_BYTES: usize = 1 << 20;

/// What one step's requests may reach.
pub(crate) struct HttpScope {
    pub(crate) client: Arc<Client>,
    pub(crate) access: Arc<StepAccess>,
    /// Whether the plugin declares the `http` capability.
    pub(crate) declared: bool,
}

fn error(kind: wit::ErrorKind, message: impl Into<String>) -> wit::Error {
    wit::Error {
        kind,
        message: message.into(),
    }
}

fn from_access(e: AccessError) -> wit::Error {
    match e {
        AccessError::Denied(m) => error(wit::ErrorKind::Denied, m),
        AccessError::Failed(m) => error(wit::ErrorKind::Failed, m),
    }
}

fn from_http(e: HttpError) -> wit::Error {
    use wit::ErrorKind as K;
    let kind = match &e {
        HttpError::InvalidUrl { .. } | HttpError::Invalid(_) => K::Invalid,
        HttpError::Denied(_) => K::Denied,
        HttpError::TooManyRedirects { .. } => K::TooManyRedirects,
        HttpError::Timeout { .. } => K::Timeout,
        HttpError::Tls { .. } => K::Tls,
        HttpError::Unreachable { .. } => K::Unreachable,
        HttpError::Failed { .. } => K::Failed,
    };
    error(kind, e.to_string())
}

fn method(m: wit::Method) -> Method {
    match m {
        wit::Method::Get => Method::GET,
        wit::Method::Head => Method::HEAD,
        wit::Method::Post => Method::POST,
        wit::Method::Put => Method::PUT,
        wit::Method::Patch => Method::PATCH,
        wit::Method::Delete => Method::DELETE,
        wit::Method::Options => Method::OPTIONS,
    }
}

impl HttpScope {
    /// The credentials as header values, read from the step's secrets.
    fn auth_headers(&self, auth: wit::Auth) -> Result<Vec<(String, String)>, wit::Error> {
        let secret = |name: &str, what: &str| self.access.secret(name, what).map_err(from_access);
        Ok(match auth {
            wit::Auth::None => Vec::new(),
            wit::Auth::Bearer(name) => vec![(
                "authorization".into(),
                format!("Bearer {}", secret(&name, "bearer token")?),
            )],
            wit::Auth::Basic(b) => {
                let password = secret(&b.password_secret, "password")?;
                let pair = format!("{}:{password}", b.username);
                vec![(
                    "authorization".into(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ),
                )]
            }
            wit::Auth::Header(h) => {
                let value = secret(&h.secret, &format!("header `{}`", h.name))?;
                vec![(h.name, value)]
            }
        })
    }
}

impl StepState {
    fn http_scope(&self) -> Result<&HttpScope, wit::Error> {
        let scope = self.http.as_ref().ok_or_else(|| {
            error(
                wit::ErrorKind::Denied,
                "outbound HTTP is not available here (only while a step runs, on a host with trusted root certificates)",
            )
        })?;
        if !scope.declared {
            return Err(error(
                wit::ErrorKind::Denied,
                "the plugin does not declare the `http` capability, so it may not send requests\n  hint: declare `Capability::Http` in the plugin's `info()`",
            ));
        }
        Ok(scope)
    }
}

impl Host for StepState {
    async fn send(&mut self, request: wit::Request) -> Result<wit::Response, wit::Error> {
        let scope = self.http_scope()?;
        let secret_headers = scope.auth_headers(request.auth)?;
        let signature = match request.sign {
            Some(s) => Some(Signing {
                key: scope
                    .access
                    .secret(&s.secret, "signing key")
                    .map_err(from_access)?
                    .into_bytes(),
                header: s
                    .header
                    .unwrap_or_else(|| kiln_http::DEFAULT_SIGNATURE_HEADER.to_string()),
            }),
            None => None,
        };
        let req = kiln_http::Request {
            method: method(request.method),
            url: request.url,
            headers: request.headers,
            secret_headers,
            body: request.body,
            signature,
            timeout: request
                .timeout_ms
                .map_or(DEFAULT_TIMEOUT, |ms| Duration::from_millis(u64::from(ms)))
                .min(kiln_http::MAX_TIMEOUT),
            max_redirects: request
                .max_redirects
                .unwrap_or(DEFAULT_REDIRECTS)
                .min(kiln_http::MAX_REDIRECTS),
            max_response_bytes: request
                .max_response_bytes
                .map_or(DEFAULT_RESPONSE_BYTES, |b| {
                    usize::try_from(b).unwrap_or(usize::MAX)
                })
                .min(kiln_http::MAX_RESPONSE_BYTES),
        };
        let access = scope.access.clone();
        let authorize = move |endpoint: &str, _: &kiln_http::Url| {
            access.check_net(endpoint, "host").map_err(|e| match e {
                AccessError::Denied(m) | AccessError::Failed(m) => m,
            })
        };
        let client = scope.client.clone();
        let log = scope.access.log.clone();
        let response = client.send(&req, &authorize).await.map_err(from_http)?;
        if response.redirects > 0 {
            log.message(
                LogStream::Info,
                &format!(
                    "followed {} redirect{} to {}",
                    response.redirects,
                    if response.redirects == 1 { "" } else { "s" },
                    response.url
                ),
            );
        }
        Ok(wit::Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
            truncated: response.truncated,
            url: response.url,
        })
    }
}
