//! The SMS channel's sender: a message for an account whose preferences ask for SMS, and whose
//! profile has a phone number with its country code, goes through Twilio as the message's
//! subject and its link (rendered from the mail templates in the account's language). Any
//! other account gets the delivery skipped.

use engine::message::OutboxMessage;
use engine::notify::{Channel, SendError, Sender, Sent};
use engine::ports::Store;
use engine::values::BoxFuture;
use integrations::mail::templates::Templates;
use integrations::twilio::Twilio;
use std::sync::Arc;

/// Longest text sent (Twilio's limit is 1,600 characters; ten segments is plenty).
const BODY_CHARS_MAX: usize = 640;

/// Sends text messages.
pub struct SmsSender {
    twilio: Twilio,
    templates: Arc<Templates>,
    store: Arc<dyn Store>,
    base_url: String,
    domain: String,
}

impl SmsSender {
    pub fn new(
        twilio: Twilio,
        templates: Arc<Templates>,
        store: Arc<dyn Store>,
        base_url: &str,
        domain: &str,
    ) -> Self {
        Self {
            twilio,
            templates,
            store,
            base_url: base_url.trim_end_matches('/').to_owned(),
            domain: domain.to_owned(),
        }
    }

    /// The number and text of `message`, or why it is not sent by SMS.
    fn prepare(&self, message: &OutboxMessage) -> Result<(String, String), SendError> {
        let account = crate::notify::account(self.store.as_ref(), message)?;
        if !account.preferences.for_kind(&message.kind).sms {
            return Err(SendError::Obsolete(
                "the account did not ask for SMS".into(),
            ));
        }
        let Some(to) = account
            .profile
            .phone
            .as_deref()
            .and_then(integrations::twilio::e164)
        else {
            return Err(SendError::Obsolete(
                "no phone number with a country code in the profile".into(),
            ));
        };
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
        let mut body: String = rendered.subject.chars().take(BODY_CHARS_MAX).collect();
        if let Some(link) = rendered.link {
            body.push(' ');
            body.push_str(&link);
        }
        Ok((to, body))
    }
}

impl Sender for SmsSender {
    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn send<'a>(&'a self, message: &'a OutboxMessage) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let (to, body) = self.prepare(message)?;
            self.twilio.send(message.id, &to, &body).await
        })
    }
}
