//! The webhook channel's sender: a delivery to an organizer's endpoint, read from its log
//! entry and posted signed with the endpoint's secret(s) as they are when its turn comes. An
//! endpoint deleted or turned off meanwhile gets the delivery skipped (replayable from the
//! log once it is on again).

use engine::message::{MessageKind, OutboxMessage};
use engine::notify::worker::WorkerConfig;
use engine::notify::{Channel, SendError, Sender, Sent};
use engine::values::BoxFuture;
use integrations::hooks::HookClient;

/// Posts webhook deliveries.
pub struct WebhookSender {
    db: storage::Db,
    client: HookClient,
    config: WorkerConfig,
}

impl WebhookSender {
    pub fn new(db: storage::Db, client: HookClient, config: WorkerConfig) -> Self {
        Self { db, client, config }
    }
}

impl Sender for WebhookSender {
    fn channel(&self) -> Channel {
        Channel::Webhook
    }

    fn worker_config(&self) -> Option<WorkerConfig> {
        Some(self.config.clone())
    }

    fn send<'a>(&'a self, message: &'a OutboxMessage) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let MessageKind::Webhook { endpoint_id, .. } = &message.kind else {
                return Err(SendError::Permanent("not a webhook delivery".into()));
            };
            let retry = |e: engine::ports::StoreError| SendError::Retry(format!("store: {e}"));
            let Some(endpoint) = self.db.webhook_endpoint(*endpoint_id).map_err(retry)? else {
                return Err(SendError::Obsolete("the endpoint was deleted".into()));
            };
            if !endpoint.enabled {
                return Err(SendError::Obsolete("the endpoint is disabled".into()));
            }
            let Some(entry) = self
                .db
                .webhook_log_entry(*endpoint_id, message.id)
                .map_err(retry)?
            else {
                return Err(SendError::Permanent("its log entry is gone".into()));
            };
            let now = chrono::Utc::now();
            let secrets = endpoint.signing_secrets(now);
            self.client
                .post(&endpoint.url, &entry, &secrets, now.timestamp())
                .await
        })
    }
}
