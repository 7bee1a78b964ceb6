//! Notifications: an HTTP POST of the run's outcome to each `on_success` / `on_failure` URL,
//! signed like GitHub signs webhooks (`X-Kiln-Signature-256: sha256=HMAC-SHA256(secret, body)`)
//! when `notifications.secret_env` (or `KILN_NOTIFY_SECRET`) is set. Queued in the store in the
//! same transaction as the run's end, delivered at least once, retried with backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Worker;
use crate::store::{self, NotificationRow, now_ms};

/// Time one delivery attempt may take.
const TIMEOUT: Duration = Duration::from_secs(10);

impl Worker {
    pub(super) async fn notify_loop(self: Arc<Self>) {
        let client = match reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cannot build the HTTP client for notifications: {e}");
                return;
            }
        };
        loop {
            loop {
                let (worker, lease) = (self.id.clone(), self.lease_ms());
                match self
                    .store
                    .write(move |c| store::claim_notification(c, &worker, now_ms(), lease))
                    .await
                {
                    Ok(Some(n)) => self.deliver(&client, n).await,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!("cannot claim a notification: {e}");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.wake_notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn deliver(&self, client: &reqwest::Client, n: NotificationRow) {
        let mut request = client
            .post(&n.url)
            .header("content-type", "application/json")
            .header("x-kiln-event", &n.kind)
            .header("x-kiln-delivery", &n.id)
            .header("x-kiln-run", &n.run_id)
            .body(n.body.clone());
        if let Some(secret) = &self.config.notify_secret {
            request = request.header(
                "x-kiln-signature-256",
                crate::server::auth::sign(secret, n.body.as_bytes()),
            );
        }
        let result = match request.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("`{}` answered {}", n.url, r.status())),
            Err(e) => Err(format!("cannot reach `{}`: {e}", n.url)),
        };
        let outcome = match result {
            Ok(()) => {
                self.metrics
                    .notifications_sent
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.metrics
                    .notifications_failed_attempts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(run = %n.run_id, "notification attempt {} failed: {error}", n.attempts);
                let retry = (n.attempts < self.config.notify_attempts).then(|| {
                    let delay = 2000i64.saturating_mul(1 << n.attempts.min(12)).min(600_000);
                    now_ms() + delay
                });
                Err((error, retry))
            }
        };
        let id = n.id.clone();
        if let Err(e) = self
            .store
            .write(move |c| store::notification_attempted(c, &id, outcome, now_ms()))
            .await
        {
            tracing::error!("cannot record a notification attempt: {e}");
        }
    }
}
