//! The e-mail channel's sender: reads what a message's templates need from the store (the
//! recipient's locale, the event, the registration and its tickets, signed now) and hands
//! the message to the configured mailer (SMTP, the spool file, or the log).

use crate::ticket_code::TicketCodes;
use engine::message::{MessageKind, OutboxMessage};
use engine::model::RegistrationStatus;
use engine::notify::{Channel, SendError, Sender, Sent};
use engine::payment::PaymentState;
use engine::ports::Store;
use engine::values::BoxFuture;
use integrations::mail::{BroadcastFacts, DueFacts, EventFacts, Facts, Mailer};
use std::sync::Arc;

/// Sends e-mail.
pub struct MailSender {
    mailer: Mailer,
    store: Arc<dyn Store>,
    codes: TicketCodes,
    unsubscribe: crate::unsubscribe::Unsubscribe,
}

impl MailSender {
    pub fn new(
        mailer: Mailer,
        store: Arc<dyn Store>,
        codes: TicketCodes,
        unsubscribe: crate::unsubscribe::Unsubscribe,
    ) -> Self {
        Self {
            mailer,
            store,
            codes,
            unsubscribe,
        }
    }
}

/// The account a message is for, as it is now (preferences, profile); `Obsolete` if the
/// message has none or it is gone (nothing to send on the account's own channels).
pub(crate) fn account(
    store: &dyn Store,
    message: &OutboxMessage,
) -> Result<engine::accounts::UserRecord, SendError> {
    let Some(user) = message.user_id else {
        return Err(SendError::Obsolete("no account to notify".into()));
    };
    store
        .user(user)
        .map_err(|e| SendError::Retry(format!("store: {e}")))?
        .ok_or_else(|| SendError::Obsolete("the account is gone".into()))
}

/// What a broadcast message says (none for other kinds).
fn broadcast_facts(
    store: &dyn Store,
    kind: &MessageKind,
) -> Result<Option<BroadcastFacts>, SendError> {
    let MessageKind::Broadcast {
        event_id,
        broadcast_id,
        ..
    } = kind
    else {
        return Ok(None);
    };
    let broadcast = store
        .broadcast(*event_id, *broadcast_id)
        .map_err(|e| SendError::Retry(format!("store: {e}")))?
        .ok_or_else(|| SendError::Permanent("broadcast not found".into()))?;
    Ok(Some(BroadcastFacts {
        subject: broadcast.subject,
        body: broadcast.body,
    }))
}

/// Who reads a message: whoever has its address (e-mail), or its account (in-app, SMS), as
/// the caller read it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reader<'a> {
    Address,
    Account(&'a engine::accounts::UserRecord),
}

/// What the templates need beyond the message (the tickets signed with `codes`, if given). A
/// store error is retried; a confirmation whose registration is no longer confirmed is not
/// sent.
pub(crate) fn facts(
    store: &dyn Store,
    codes: Option<&TicketCodes>,
    message: &OutboxMessage,
    reader: Reader<'_>,
) -> Result<Facts, SendError> {
    let retry = |e: engine::ports::StoreError| SendError::Retry(format!("store: {e}"));
    let mut facts = Facts {
        locale: reader_locale(store, message, reader)?,
        ..Facts::default()
    };
    let registration = message.kind.registration_id();
    let event_id = match &message.kind {
        MessageKind::EventCanceled { event_id, .. } => Some(*event_id),
        _ => None,
    };
    let view = match registration {
        Some(id) => store.registration(id).map_err(retry)?,
        None => None,
    };
    // A confirmation, a reminder or a change is about a confirmed registration, with its
    // tickets (and the calendar entry, updated); a
    // broadcast goes to confirmed registrations only.
    let confirmation = matches!(
        message.kind,
        MessageKind::Confirmed { .. }
            | MessageKind::EventReminder { .. }
            | MessageKind::EventChanged { .. }
    );
    let attending = confirmation || matches!(message.kind, MessageKind::Broadcast { .. });
    if attending && view.is_none() {
        return Err(SendError::Permanent("registration not found".into()));
    }
    facts.broadcast = broadcast_facts(store, &message.kind)?;
    if let Some(view) = &view {
        facts.attendee_name = Some(view.attendee.name.clone());
        if let Some(payment) = &view.payment {
            let back = payment.refunded_minor() + payment.refunding_minor();
            facts.refund = (back > 0).then(|| (back, payment.currency.clone()));
        }
        if attending && view.status != RegistrationStatus::Confirmed {
            return Err(SendError::Obsolete(format!(
                "the registration is {} now",
                view.status.as_str()
            )));
        }
        if matches!(message.kind, MessageKind::PaymentDue { .. }) {
            facts.due = Some(still_due(view)?);
        }
    } else if matches!(message.kind, MessageKind::PaymentDue { .. }) {
        return Err(SendError::Permanent("registration not found".into()));
    }
    let Some(event_id) = view.as_ref().map(|v| v.event_id).or(event_id) else {
        return Ok(facts);
    };
    let Some(record) = store.event(event_id).map_err(retry)? else {
        return Ok(facts);
    };
    if let Some(view) = &view {
        facts.ticket_type = record
            .ticket_types
            .iter()
            .find(|t| t.id == view.ticket_type_id)
            .map(|t| t.name.clone());
        if confirmation && let Some(codes) = codes {
            facts.tickets = codes.lines(&record, view);
        }
    }
    // The account's language, else the event's.
    if facts.locale.is_none() {
        facts.locale.clone_from(&record.locale);
    }
    facts.event = Some(EventFacts::from(&record));
    Ok(facts)
}

/// The account's language, if the account reads the message (its inbox, its phone, its own
/// address: an organizer registering someone else does not choose their language).
fn reader_locale(
    store: &dyn Store,
    message: &OutboxMessage,
    reader: Reader<'_>,
) -> Result<Option<String>, SendError> {
    Ok(match reader {
        Reader::Account(account) => Some(account.preferences.locale.clone()),
        Reader::Address => match message.user_id {
            Some(user) => store
                .user(user)
                .map_err(|e| SendError::Retry(format!("store: {e}")))?
                .filter(|account| account.email.eq_ignore_ascii_case(&message.to))
                .map(|account| account.preferences.locale),
            None => None,
        },
    })
}

/// What a hold still asks its buyer to pay; `Obsolete` if it no longer does: since the pool
/// asked, it was paid or ended, or a payment got under way (not one that failed or was
/// canceled: the link is still what the buyer needs).
fn still_due(view: &engine::ports::RegistrationView) -> Result<DueFacts, SendError> {
    if view.status != RegistrationStatus::Held {
        return Err(SendError::Obsolete(format!(
            "the registration is {} now",
            view.status.as_str()
        )));
    }
    if let Some(payment) = &view.payment
        && !matches!(
            payment.state(),
            PaymentState::Failed | PaymentState::Canceled
        )
    {
        return Err(SendError::Obsolete(format!(
            "its payment is {}",
            payment.state().as_str()
        )));
    }
    match &view.price {
        Some(price) if price.total_minor > 0 => Ok(DueFacts {
            amount_minor: price.total_minor,
            currency: price.currency.clone(),
            quantity: view.quantity,
            held_until: view.expires_at,
        }),
        _ => Err(SendError::Obsolete("nothing to pay".into())),
    }
}

impl Sender for MailSender {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn send<'a>(&'a self, message: &'a OutboxMessage) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            // Transactional mail goes whatever the preferences say; event news (reminders,
            // broadcasts) to an account's own address as its preferences say, with a
            // one-click unsubscribe (someone an organizer registered is not that account).
            // (An account deleted since: the attendee's address still gets it.)
            let owner = match message.user_id {
                Some(user) if message.kind.is_event_news() => self
                    .store
                    .user(user)
                    .map_err(|e| SendError::Retry(format!("store: {e}")))?,
                _ => None,
            }
            .filter(|account| account.email.eq_ignore_ascii_case(&message.to));
            if owner
                .as_ref()
                .is_some_and(|account| !account.preferences.reminders.email)
            {
                return Err(SendError::Obsolete(
                    "the account turned e-mail reminders off".into(),
                ));
            }
            let mut facts = facts(
                self.store.as_ref(),
                Some(&self.codes),
                message,
                Reader::Address,
            )?;
            facts.unsubscribe_url = engine::accounts::Category::of(&message.kind)
                .zip(owner.map(|account| account.id))
                .and_then(|(category, user)| self.unsubscribe.url_for(user, category));
            self.mailer.send(message, &facts).await
        })
    }
}

/// CPU priority of the thread that runs the channels' sends (a nice value: higher is lower).
/// Rendering, reading facts, writing inboxes and talking to providers yield to selling: on a
/// busy machine the backlog grows instead of the sale slowing down.
pub const SEND_NICE: i32 = 10;

/// Starts the thread that runs the channels' sends, at [`SEND_NICE`], and returns its
/// runtime's handle; it lives as long as the process. One thread: sends mostly wait on
/// providers, and a second thread (measured: a thread per core) took more from a sale on two
/// cores without draining a backlog faster.
pub fn send_runtime() -> anyhow::Result<tokio::runtime::Handle> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("notify-send".into())
        .spawn(move || {
            // On Linux a nice value is per thread: this one only.
            if let Err(e) = rustix::process::setpriority_process(None, SEND_NICE) {
                tracing::warn!(error = %e, "could not lower the send thread's priority");
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(runtime.handle().clone()));
            runtime.block_on(std::future::pending::<()>());
        })?;
    Ok(rx.recv()??)
}

/// A sender whose sends run on the send thread ([`send_runtime`]); the channel's worker
/// (its queue reads and outcome writes) stays where it is.
pub struct OnSendThread {
    inner: Arc<dyn Sender>,
    runtime: tokio::runtime::Handle,
}

impl OnSendThread {
    pub fn new(inner: Arc<dyn Sender>, runtime: tokio::runtime::Handle) -> Self {
        Self { inner, runtime }
    }
}

/// A send task that is aborted when its worker stops waiting for it (the worker's own task
/// aborted at shutdown), as a send on the worker's own runtime would be: it does not go on to
/// reach the provider with nobody left to record the outcome.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Sender for OnSendThread {
    fn channel(&self) -> Channel {
        self.inner.channel()
    }

    fn worker_config(&self) -> Option<engine::notify::worker::WorkerConfig> {
        self.inner.worker_config()
    }

    fn send<'a>(&'a self, message: &'a OutboxMessage) -> BoxFuture<'a, Result<Sent, SendError>> {
        let inner = self.inner.clone();
        let message = message.clone();
        let task = AbortOnDrop(
            self.runtime
                .spawn(async move { inner.send(&message).await }),
        );
        Box::pin(async move {
            let mut task = task;
            (&mut task.0)
                .await
                .map_err(|e| SendError::Retry(format!("send task: {e}")))?
        })
    }
}
