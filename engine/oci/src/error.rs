//! The errors of the OCI layer. Each says what went wrong with the offending value in
//! backticks, and what to do.

use std::path::PathBuf;

use crate::context::ContextError;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid buildkit address `{addr}`: {hint}")]
    InvalidAddr { addr: String, hint: String },

    #[error("invalid cache `{spec}`: {hint}")]
    InvalidCache { spec: String, hint: String },

    #[error("{0}")]
    Invalid(String),

    #[error("{what} is not supported: {hint}")]
    Unsupported { what: String, hint: String },

    #[error(
        "cannot reach BuildKit at `{addr}`: {detail}; hint: is the daemon running? (`scripts/services.sh up docker` starts one for tests)"
    )]
    Unreachable { addr: String, detail: String },

    #[error("no Dockerfile at `{}`; hint: add one, set `dockerfile:`, or run the `detect` step first", path.display())]
    DockerfileNotFound { path: PathBuf },

    #[error("no build context directory at `{}`; hint: check `context:`", path.display())]
    ContextNotFound { path: PathBuf },

    #[error(transparent)]
    Context(#[from] ContextError),

    #[error("build failed: {message}")]
    BuildFailed { message: String },

    #[error(
        "no image `{image}` in the daemon; hint: push the image a `build` step produced (`${{{{ steps.ID.outputs.image }}}}`)"
    )]
    ImageNotFound { image: String },

    #[error(
        "registry `{registry}` refused the credentials: {detail}; hint: check the username and password secrets, or `docker login {registry}` for docker-config auth"
    )]
    Auth { registry: String, detail: String },

    #[error(
        "cannot reach registry `{registry}`: {detail}; hint: is it up, and does the daemon trust it (loopback registries are plain HTTP, others need TLS or `insecure-registries`)?"
    )]
    RegistryUnreachable { registry: String, detail: String },

    #[error("push to `{target}` failed: {detail}")]
    PushFailed { target: String, detail: String },

    #[error("{0}")]
    Other(String),
}

impl OciError {
    /// Whether trying again later may succeed (daemon or registry down, a transient failure).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            OciError::Unreachable { .. }
                | OciError::RegistryUnreachable { .. }
                | OciError::Other(_)
        )
    }
}
