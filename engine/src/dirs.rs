//! Where Kiln keeps things on disk.

use std::path::PathBuf;

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Caches that can be deleted at any time (compiled components): `$KILN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("kiln"),
        _ => home().join(".cache/kiln"),
    }
}

/// Durable state (run workspaces): `$KILN_DATA_DIR`, else `$XDG_DATA_HOME/kiln`, else
/// `~/.local/share/kiln`.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_DATA_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("kiln"),
        _ => home().join(".local/share/kiln"),
    }
}

/// Default size of the git mirror cache: 10 GiB, or `$KILN_GIT_CACHE_MAX_MB` MiB.
pub const GIT_CACHE_MAX_BYTES: u64 = 10 << 30;

/// The git layer with its mirrors under [`cache_dir`]`/git`. `allow_local` lets `file://`
/// remotes be cloned (yes for `kiln run` on one's own machine).
pub fn git(allow_local: bool) -> kiln_git::Git {
    let max = std::env::var("KILN_GIT_CACHE_MAX_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(GIT_CACHE_MAX_BYTES, |mb| mb.saturating_mul(1 << 20));
    kiln_git::Git::new(kiln_git::GitConfig {
        mirror_dir: cache_dir().join("git"),
        mirror_max_bytes: max,
        allow_local,
    })
}

/// `buildkit.addr`: where BuildKit is, from `$KILN_BUILDKIT_ADDR` (default `docker`, which
/// follows `$DOCKER_HOST`). See [`kiln_oci::BuildkitAddr::parse`] for the forms.
pub fn buildkit_addr() -> Result<kiln_oci::BuildkitAddr, kiln_oci::OciError> {
    let addr = std::env::var("KILN_BUILDKIT_ADDR").unwrap_or_else(|_| "docker".to_string());
    let docker_host = std::env::var("DOCKER_HOST").ok();
    kiln_oci::BuildkitAddr::parse(&addr, docker_host.as_deref())
}

/// TLS for a `tcp://` buildkitd, from `$KILN_BUILDKIT_TLS_CA` (the CA of the daemon's
/// certificate; setting it turns TLS on), `$KILN_BUILDKIT_TLS_CERT` and `$KILN_BUILDKIT_TLS_KEY`
/// (a client certificate, when the daemon checks clients) and `$KILN_BUILDKIT_TLS_SERVER_NAME`.
pub fn buildkit_tls() -> Option<kiln_oci::TlsFiles> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let ca = var("KILN_BUILDKIT_TLS_CA")?;
    Some(kiln_oci::TlsFiles {
        ca: ca.into(),
        cert: var("KILN_BUILDKIT_TLS_CERT").map(Into::into),
        key: var("KILN_BUILDKIT_TLS_KEY").map(Into::into),
        server_name: var("KILN_BUILDKIT_TLS_SERVER_NAME").and_then(|v| v.into_string().ok()),
    })
}

/// The BuildKit behind the `image` interface, as `buildkit.addr` and the TLS settings say.
pub fn try_builder() -> Result<kiln_oci::Builder, kiln_oci::OciError> {
    kiln_oci::Builder::with_tls(buildkit_addr()?, buildkit_tls())
}

/// The BuildKit behind the `image` interface, or `None` when `buildkit.addr` is unusable
/// (`kiln run` reports why before it starts).
pub fn builder() -> Option<kiln_oci::Builder> {
    try_builder().ok()
}

/// The client behind the `http` interface, trusting the system's root certificates (or
/// `SSL_CERT_FILE`/`SSL_CERT_DIR`); `None`, with a warning, when none can be loaded.
pub fn http_client() -> Option<kiln_http::Client> {
    match kiln_http::Client::new(concat!("kiln/", env!("CARGO_PKG_VERSION"))) {
        Ok(client) => Some(client),
        Err(e) => {
            tracing::warn!("outbound HTTP is off: {e}");
            None
        }
    }
}

/// Default size of the local cache store: 10 GiB, or `$KILN_CACHE_MAX_MB` MiB.
pub const CACHE_MAX_BYTES: u64 = 10 << 30;

/// The cache store behind the step cache and the `cache` interface: the local store under
/// [`cache_dir`]`/store`, capped at `$KILN_CACHE_MAX_MB`, and, when `$KILN_CACHE_REGISTRY`
/// names a repository (`host[:port]/path`), that registry behind it, with the credentials of
/// the Docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
pub fn cache_store() -> Result<kiln_cache::Cache, String> {
    let max = match std::env::var("KILN_CACHE_MAX_MB") {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(|mb| mb.saturating_mul(1 << 20))
            .map_err(|_| format!("`KILN_CACHE_MAX_MB` is `{v}`, not a number of MiB; hint: e.g. `KILN_CACHE_MAX_MB=20480`"))?,
        Err(_) => CACHE_MAX_BYTES,
    };
    let local =
        kiln_cache::LocalStore::open(&cache_dir().join("store"), max).map_err(|e| e.to_string())?;
    let remote = match std::env::var("KILN_CACHE_REGISTRY") {
        Ok(location) if !location.trim().is_empty() => {
            let location = location.trim().to_owned();
            let host = location
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let auth = kiln_oci::auth::DockerConfig::load_default()
                .and_then(|c| c.lookup(&host))
                .map_err(|e| format!("credentials for the cache registry `{host}`: {e}"))?;
            Some(
                kiln_cache::RegistryStore::new(&location, auth)
                    .map_err(|e| format!("{e} (from `KILN_CACHE_REGISTRY`)"))?,
            )
        }
        _ => None,
    };
    Ok(kiln_cache::Cache::new(local, remote))
}
