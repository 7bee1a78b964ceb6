//! Kiln's OCI layer: build images with BuildKit and push them to registries.
//!
//! - [`context`]: the build context as a tar, with `.dockerignore` applied.
//! - [`reference`]: image references (`host[:port]/path[:tag][@digest]`).
//! - [`auth`]: registry credentials from secrets or `~/.docker/config.json`.

pub mod auth;
pub mod context;
pub mod reference;

pub use auth::{
    AuthError, CredentialHelper, Credentials, DockerConfig, HelperReply, ProcessHelper,
    RegistryAuth,
};
pub use context::{ContextError, ContextStats, DockerIgnore, pack};
pub use reference::{Reference, ReferenceError};
