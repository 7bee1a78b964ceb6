//! `kiln serve`: runs over HTTP. axum, JSON, bearer tokens.
//!
//! Data flows one way: a request is checked and written to the [`crate::store`] (durable
//! before the 2xx), the [`crate::queue`] worker claims it from there, runs it with the
//! scheduler and writes what happens back to the store, and the API reads it from the store.
//! The API never runs anything itself; it only wakes the worker.

pub mod api;
pub mod auth;
pub mod config;
pub mod metrics;
pub mod openapi;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::queue::Worker;
use crate::store::Store;
use config::Config;
use metrics::Metrics;

/// Largest API request body.
pub const MAX_API_BODY: usize = 5 << 20;
/// Largest webhook body (GitHub caps payloads at 25 MB).
pub const MAX_WEBHOOK_BODY: usize = 25 << 20;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub worker: Arc<Worker>,
    pub metrics: Arc<Metrics>,
}

/// Every route. `/v1/*` needs a bearer token, except the webhooks (they carry signatures)
/// and the OpenAPI document.
pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route("/v1/runs", post(api::create_run).get(api::list_runs))
        .route("/v1/runs/{id}", get(api::get_run))
        .route("/v1/runs/{id}/logs", get(api::logs))
        .route("/v1/runs/{id}/cancel", post(api::cancel))
        .route("/v1/runs/{id}/retry", post(api::retry))
        .route("/v1/builds", post(api::create_build))
        .route("/v1/fail-queue", get(api::fail_queue))
        .route("/v1/events/{id}", get(api::get_event))
        .layer(DefaultBodyLimit::max(MAX_API_BODY))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_token,
        ));
    let open = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/v1/openapi.json", get(api::openapi))
        .route(
            "/v1/webhooks/github",
            post(webhooks::github).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY)),
        )
        .route(
            "/v1/webhooks/gitlab",
            post(webhooks::gitlab).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY)),
        );
    authed
        .merge(open)
        .fallback(api::not_found)
        .with_state(state)
}

/// Run the server until SIGINT or SIGTERM. Runs in progress at that moment are recovered
/// (resumed, reusing their finished steps) when a worker starts on the store again.
pub async fn serve(config: Config) -> Result<(), String> {
    if config.tokens.is_empty() {
        return Err(
            "no API tokens are configured; hint: set `KILN_API_TOKENS` (comma-separated `name:token` or tokens) or list hashes under `api.tokens` in the configuration (`kiln token new` makes one)"
                .to_owned(),
        );
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create the data dir `{}`: {e}",
            config.data_dir.display()
        )
    })?;
    // One process per data dir: its worker id and its workspaces are its own.
    let lock_path = config.data_dir.join("serve.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open `{}`: {e}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        return Err(format!(
            "another `kiln serve` uses the data dir `{}`; hint: give each server its own `--data-dir` (they may share a store with `KILN_STORE_PATH`)",
            config.data_dir.display()
        ));
    }
    let store = Store::open(&config.store_path, config.synchronous).map_err(|e| e.to_string())?;
    let worker_id = match &config.worker_id {
        Some(id) => id.clone(),
        None => crate::queue::worker_id(&config.data_dir)?,
    };
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    let config = Arc::new(config);
    let worker = Worker::new(
        config.clone(),
        store.clone(),
        worker_id.clone(),
        metrics.clone(),
        shutdown.clone(),
    )?;
    worker.start().await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on `{}`: {e}", config.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    eprintln!(
        "kiln serve: listening on http://{addr} (worker `{worker_id}`, store `{}`, {} token(s){}{})",
        config.store_path.display(),
        config.tokens.len(),
        if config.github_secret.is_some() {
            ", github webhooks"
        } else {
            ""
        },
        if config.gitlab_token.is_some() {
            ", gitlab webhooks"
        } else {
            ""
        },
    );
    let state = AppState {
        store,
        config: config.clone(),
        worker,
        metrics,
    };
    let stop = shutdown.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            eprintln!("kiln serve: stopping (running runs resume at the next start)");
            stop.cancel();
            // Requests in flight get a few seconds; nothing accepted depends on them.
            tokio::spawn(async {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                eprintln!("kiln serve: connections still open after 10 s; exiting");
                std::process::exit(0);
            });
        })
        .await
        .map_err(|e| format!("the server stopped: {e}"))?;
    drop(lock);
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
