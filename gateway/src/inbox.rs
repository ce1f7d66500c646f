//! The in-app channel's sender: renders a message with the mail templates (subject as the
//! title, the text as the body, the main link) in the account's locale, adds it to the
//! account's inbox, and tells the account's live listeners (`notifications:{user}`). An
//! account whose preferences turn in-app notifications off for the message's category gets
//! the delivery skipped.

use engine::feeds::UserFeeds;
use engine::message::OutboxMessage;
use engine::notify::inbox::{Inbox, InboxChange, InboxEntry};
use engine::notify::{Channel, SendError, Sender, Sent};
use engine::ports::Store;
use engine::values::BoxFuture;
use integrations::mail::templates::Templates;
use std::sync::Arc;

/// The live listeners of every account's inbox.
pub type InboxFeeds = UserFeeds<InboxChange>;

/// Writes to in-app inboxes.
pub struct InAppSender {
    templates: Arc<Templates>,
    store: Arc<dyn Store>,
    inbox: Arc<dyn Inbox>,
    feeds: Arc<InboxFeeds>,
    /// The ticketing front's base URL, and the domain of ids.
    base_url: String,
    domain: String,
}

/// What an in-app sender needs besides the stores.
pub struct InAppSettings {
    pub base_url: String,
    pub domain: String,
}

impl InAppSender {
    pub fn new(
        templates: Arc<Templates>,
        store: Arc<dyn Store>,
        inbox: Arc<dyn Inbox>,
        feeds: Arc<InboxFeeds>,
        settings: InAppSettings,
    ) -> Self {
        Self {
            templates,
            store,
            inbox,
            feeds,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            domain: settings.domain,
        }
    }

    fn deliver(&self, message: &OutboxMessage) -> Result<Sent, SendError> {
        let retry = |e: engine::ports::StoreError| SendError::Retry(format!("store: {e}"));
        let account = crate::notify::account(self.store.as_ref(), message)?;
        let user = account.id;
        if !account.preferences.for_kind(&message.kind).push {
            return Err(SendError::Obsolete(
                "the account turned in-app notifications off".into(),
            ));
        }
        let facts = crate::notify::facts(
            self.store.as_ref(),
            None,
            message,
            crate::notify::Reader::Account(&account),
        )?;
        let rendered = self
            .templates
            .render_notice(message, &facts, &self.base_url, &self.domain)
            .map_err(SendError::Permanent)?;
        let entry = InboxEntry {
            id: message.id,
            user_id: user,
            kind: message.kind.as_str().to_owned(),
            title: rendered.subject,
            body: rendered.text,
            link: rendered.link,
            created_at: message.created_at,
            read_at: None,
        };
        if self.inbox.inbox_add(&entry).map_err(retry)? {
            self.feeds.publish(user, InboxChange::Added(entry.id));
        }
        Ok(Sent::default())
    }
}

impl Sender for InAppSender {
    fn channel(&self) -> Channel {
        Channel::InApp
    }

    fn send<'a>(&'a self, message: &'a OutboxMessage) -> BoxFuture<'a, Result<Sent, SendError>> {
        // A few point reads and one small write, like the mail sender's reads: inline.
        Box::pin(async move { self.deliver(message) })
    }
}
