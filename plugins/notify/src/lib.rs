//! `notify`: send an HTTP request (a webhook) through the host's `http` interface, optionally
//! signed with HMAC-SHA256 using a secret the plugin never sees, and fail the step when the
//! answer is not the expected status. Retries are the step's `retry:`; the `X-Kiln-Delivery`
//! header is the same on every attempt, so a receiver can drop duplicates.
//!
//! ```yaml
//! - id: tell-deployer
//!   uses: notify
//!   needs: [image]
//!   allow: { net: ["deployer.internal:443"] }
//!   secrets: [DEPLOYER_KEY]
//!   retry: { attempts: 3, backoff: 5s }
//!   with:
//!     url: https://deployer.internal/hooks/kiln
//!     json: { image: "${{ steps.image.outputs.image }}", sha: "${{ git.sha }}" }
//!     sign-with: DEPLOYER_KEY          # X-Kiln-Signature-256: sha256=<hex>
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kiln_plugin_sdk::http::{self, Auth, Method, Request, RequestAuth, Signature};
use kiln_plugin_sdk::{
    Capability, Context, Info, Plugin, Problem, StepError, Value, check_config, json, log,
    no_problems, serde_json, set_output,
};
use serde::Deserialize;

/// Most of the response body kept in the `body` output.
const MAX_BODY_OUTPUT: usize = 64 << 10;
/// Most of the response body read at all.
const MAX_RESPONSE: u32 = 1 << 20;
/// Headers the host's HTTP client sets itself.
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
const DEFAULT_SIGNATURE_HEADER: &str = "X-Kiln-Signature-256";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    url: String,
    method: Option<String>,
    headers: Option<BTreeMap<String, Scalar>>,
    body: Option<String>,
    json: Option<Value>,
    sign_with: Option<String>,
    signature_header: Option<String>,
    auth: Option<Auth>,
    expect_status: Option<OneOrMany<StatusItem>>,
    request_timeout: Option<String>,
    follow_redirects: Option<bool>,
}

/// A header value as YAML gives it: text, a number or a boolean.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

/// `204`, or a class: `2xx`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum StatusItem {
    Code(u16),
    Class(String),
}

impl StatusItem {
    fn matches(&self, status: u16) -> bool {
        match self {
            StatusItem::Code(c) => *c == status,
            StatusItem::Class(c) => class_digit(c).is_some_and(|d| status / 100 == d),
        }
    }

    fn show(&self) -> String {
        match self {
            StatusItem::Code(c) => c.to_string(),
            StatusItem::Class(c) => c.to_ascii_lowercase(),
        }
    }
}

fn class_digit(c: &str) -> Option<u16> {
    let c = c.to_ascii_lowercase();
    let d = c.strip_suffix("xx")?;
    let d: u16 = d.parse().ok()?;
    (1..=5).contains(&d).then_some(d)
}

fn is_expression(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.contains("${{"))
}

/// `30s`, `1500ms`, `2m`.
fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

/// RFC 9110 token characters: what a header name may hold.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        425 => "Too Early",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// A header-safe form of a run or step id (matrix values may hold any text).
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

/// The start of a response body, on one line, for an error message.
fn excerpt(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut: String = one_line.chars().take(200).collect();
    if cut.len() < one_line.len() {
        cut.push('…');
    }
    cut
}

struct Notify;

impl Plugin for Notify {
    fn info() -> Info {
        Info::new(
            "notify",
            env!("CARGO_PKG_VERSION"),
            "send an HTTP request (a webhook), optionally HMAC-signed with a secret, and check the answer",
        )
        .schema(json!({
            "type": "object",
            "properties": {
                "url": { "type": "string", "description": "https:// or http:// URL; its host:port must be in `allow.net`" },
                "method": { "type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get", "head", "post", "put", "patch", "delete", "options"], "description": "default POST" },
                "headers": { "type": "object", "additionalProperties": { "type": ["string", "number", "boolean"] }, "description": "extra request headers" },
                "body": { "type": "string", "description": "the request body as text (Content-Type text/plain unless set)" },
                "json": { "description": "the request body as JSON (Content-Type application/json unless set)" },
                "sign-with": { "type": "string", "description": "name of the step secret whose value signs the body: `X-Kiln-Signature-256: sha256=<HMAC-SHA256 hex>`" },
                "signature-header": { "type": "string", "description": "header for the signature (default X-Kiln-Signature-256; e.g. X-Hub-Signature-256)" },
                "auth": Auth::schema("credentials the host adds, as names of the step's secrets"),
                "expect-status": {
                    "description": "status(es) that count as success: codes (`204`) or classes (`2xx`); default 2xx",
                    "oneOf": [
                        { "type": ["integer", "string"] },
                        { "type": "array", "items": { "type": ["integer", "string"] }, "minItems": 1 }
                    ]
                },
                "request-timeout": { "type": "string", "description": "for the whole exchange, e.g. `10s` (default 30s; the step's `timeout:` applies too)" },
                "follow-redirects": { "type": "boolean", "description": "follow redirects to hosts in `allow.net` (default true)" }
            },
            "required": ["url"],
            "additionalProperties": false
        }))
        .outputs(&["status", "body", "json", "url"])
        .capability(Capability::Http)
    }

    fn validate(config: &Value) -> Result<(), Vec<Problem>> {
        check_config::<Config>(config)?;
        let mut problems = Vec::new();
        if let Some(v @ Value::String(url)) = config.get("url")
            && !is_expression(v)
        {
            problems.extend(url_problem(url));
        }
        let method = match config.get("method") {
            Some(v @ Value::String(m)) if !is_expression(v) => match Method::parse(m) {
                Some(m) => Some(m),
                None => {
                    problems.push(Problem::at(
                        "/method",
                        format!("method `{m}` is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                    ));
                    None
                }
            },
            Some(_) => None,
            None => Some(Method::Post),
        };
        if config.get("body").is_some() && config.get("json").is_some() {
            problems.push(Problem::at(
                "/json",
                "`body` and `json` are alternatives; keep one",
            ));
        }
        if let Some(m @ (Method::Get | Method::Head)) = method {
            for key in ["body", "json"] {
                if config.get(key).is_some() {
                    problems.push(Problem::at(
                        format!("/{key}"),
                        format!(
                            "a {} request has no body; remove `{key}` or use `method: POST`",
                            m.as_str()
                        ),
                    ));
                }
            }
        }
        let signature_header = config
            .get("signature-header")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_SIGNATURE_HEADER);
        if let Some(Value::Object(headers)) = config.get("headers") {
            for name in headers.keys() {
                let at = format!("/headers/{}", name.replace('~', "~0").replace('/', "~1"));
                if !valid_header_name(name) {
                    problems.push(Problem::at(
                        at,
                        format!("`{name}` is not a valid header name"),
                    ));
                } else if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                    problems.push(Problem::at(
                        at,
                        format!("header `{name}` is set by the HTTP client itself; remove it"),
                    ));
                } else if config.get("sign-with").is_some()
                    && name.eq_ignore_ascii_case(signature_header)
                {
                    problems.push(Problem::at(
                        at,
                        format!("header `{name}` is where the signature goes; remove it"),
                    ));
                } else if config.get("auth").is_some() && name.eq_ignore_ascii_case("authorization")
                {
                    problems.push(Problem::at(
                        at,
                        "`Authorization` is set from `auth`; keep one of them",
                    ));
                }
            }
        }
        if let Some(Value::String(h)) = config.get("signature-header") {
            if config.get("sign-with").is_none() {
                problems.push(Problem::at(
                    "/signature-header",
                    "`signature-header` names where the signature goes, but there is no `sign-with`; add the secret that signs",
                ));
            } else if !valid_header_name(h) {
                problems.push(Problem::at(
                    "/signature-header",
                    format!("`{h}` is not a valid header name"),
                ));
            }
        }
        if let Some(auth) = config.get("auth") {
            problems.extend(Auth::problems(auth, "/auth"));
        }
        let statuses: Vec<(String, &Value)> = match config.get("expect-status") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("/expect-status/{i}"), v))
                .collect(),
            Some(v) => vec![("/expect-status".to_string(), v)],
            None => Vec::new(),
        };
        for (at, v) in statuses {
            let ok = match v {
                Value::Number(n) => n.as_u64().is_some_and(|n| (100..=599).contains(&n)),
                Value::String(s) => is_expression(v) || class_digit(s).is_some(),
                _ => true, // the type was checked above
            };
            if !ok {
                let shown = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                problems.push(Problem::at(
                    at,
                    format!("`{shown}` is not a status: write a code from 100 to 599 or a class such as `2xx`"),
                ));
            }
        }
        if let Some(v @ Value::String(t)) = config.get("request-timeout")
            && !is_expression(v)
            && !parse_duration(t)
                .is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(600))
        {
            problems.push(Problem::at(
                "/request-timeout",
                format!(
                    "`{t}` is not a timeout between 1ms and 10m (write `500ms`, `30s` or `2m`)"
                ),
            ));
        }
        no_problems(problems)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        let invalid = StepError::InvalidConfig;
        if let Some(p) = url_problem(&config.url) {
            return Err(invalid(p.message));
        }
        let method = match &config.method {
            Some(m) => Method::parse(m).ok_or_else(|| {
                invalid(format!(
                    "method `{m}` is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
                ))
            })?,
            None => Method::Post,
        };
        let (body, content_type) = match (&config.body, &config.json) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "`body` and `json` are alternatives; keep one".into(),
                ));
            }
            (Some(text), None) => (text.clone().into_bytes(), Some("text/plain; charset=utf-8")),
            (None, Some(value)) => (
                serde_json::to_vec(value)
                    .map_err(|e| StepError::Failed(format!("cannot encode `json`: {e}")))?,
                Some("application/json"),
            ),
            (None, None) => (Vec::new(), None),
        };
        let mut headers: Vec<(String, String)> = config
            .headers
            .iter()
            .flatten()
            .map(|(n, v)| (n.clone(), v.text()))
            .collect();
        let has = |headers: &[(String, String)], name: &str| {
            headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if let Some(ct) = content_type
            && !has(&headers, "content-type")
        {
            headers.push(("Content-Type".into(), ct.into()));
        }
        for (name, value) in [
            (
                "X-Kiln-Delivery",
                format!("{}/{}", header_safe(&ctx.run_id), header_safe(&ctx.step_id)),
            ),
            ("X-Kiln-Attempt", ctx.attempt.to_string()),
        ] {
            if !has(&headers, name) {
                headers.push((name.into(), value));
            }
        }
        let timeout = match &config.request_timeout {
            Some(t) => Some(parse_duration(t).ok_or_else(|| {
                invalid(format!(
                    "`{t}` is not a timeout (write `500ms`, `30s` or `2m`)"
                ))
            })?),
            None => None,
        };
        let auth = match &config.auth {
            Some(a) => a.request_auth()?,
            None => RequestAuth::None,
        };
        let signed = config.sign_with.is_some();
        let request = Request {
            method,
            url: config.url.clone(),
            headers,
            body,
            auth,
            sign: config.sign_with.clone().map(|secret| Signature {
                secret,
                header: config.signature_header.clone(),
            }),
            timeout_ms: timeout.map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
            max_redirects: match config.follow_redirects {
                Some(false) => Some(0),
                _ => None,
            },
            max_response_bytes: Some(MAX_RESPONSE),
        };
        log::info(&format!(
            "{} {} ({} bytes{})",
            method.as_str(),
            config.url,
            request.body.len(),
            if signed { ", signed" } else { "" }
        ));
        let started = Instant::now();
        let response = http::send(&request)?;
        let elapsed = started.elapsed();
        let status = response.status;
        log::info(&format!(
            "{status} {} in {} ms{}",
            reason(status),
            elapsed.as_millis(),
            if response.truncated {
                format!(" (body cut at {} KiB)", MAX_RESPONSE >> 10)
            } else {
                String::new()
            }
        ));
        let text = String::from_utf8_lossy(&response.body).into_owned();
        let parsed: Value = if response.truncated {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        let mut body_output = text.clone();
        if body_output.len() > MAX_BODY_OUTPUT {
            let mut cut = MAX_BODY_OUTPUT;
            while !body_output.is_char_boundary(cut) {
                cut -= 1;
            }
            body_output.truncate(cut);
        }
        set_output("status", &status)?;
        set_output("body", &body_output)?;
        set_output("json", &parsed)?;
        set_output("url", &response.url)?;

        let expected: Vec<StatusItem> = match config.expect_status {
            None => vec![StatusItem::Class("2xx".into())],
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        };
        if expected.iter().any(|e| e.matches(status)) {
            return Ok(());
        }
        let wanted = expected
            .iter()
            .map(StatusItem::show)
            .collect::<Vec<_>>()
            .join(", ");
        let answered = format!(
            "`{} {}` answered {status} {}, expected {wanted}{}",
            method.as_str(),
            response.url,
            reason(status),
            if text.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", excerpt(&text))
            }
        );
        Err(match status {
            401 | 403 => StepError::Denied(format!(
                "{answered}\n  hint: check the credentials in `auth` (or the signing key) and what they may do"
            )),
            408 | 425 | 429 => StepError::Failed(format!(
                "{answered}\n  hint: the server asks to try again later; the step is retried when it has `retry:`"
            )),
            400..=499 => StepError::InvalidConfig(format!(
                "{answered}\n  hint: the server refused the request as configured (`url`, `method`, `headers`, the body); retrying will not change that"
            )),
            _ => StepError::Failed(format!(
                "{answered}\n  hint: the step is retried when it has `retry:`"
            )),
        })
    }
}

/// What is wrong with a request URL, if anything.
fn url_problem(url: &str) -> Option<Problem> {
    let problem = |m: String| Some(Problem::at("/url", m));
    let Some((scheme, rest)) = url.split_once("://") else {
        return problem(format!(
            "`{url}` is not an absolute URL; write `https://host/path`"
        ));
    };
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return problem(format!(
            "scheme `{scheme}` is not supported; use `https://` (or `http://`)"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return problem(
            "the URL contains credentials; remove them and use `auth:` with a secret".into(),
        );
    }
    if authority.is_empty() {
        return problem(format!("`{url}` has no host"));
    }
    None
}

kiln_plugin_sdk::export_plugin!(Notify);
