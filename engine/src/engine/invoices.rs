//! Issuing invoices and credit notes, and the invoice relay that does it.
//!
//! Numbers are decided by the journal: an organizer's documents are the events of its ledger
//! stream, a document's number is its sequence number there, and an append must start at the
//! stream's next number. Issuing is read-decide-append with the expected number, again on a
//! conflict: read the ledger's head, then each registration's documents (in that order: a
//! document appended after the head was read makes the append conflict, so nothing is issued
//! twice), decide what is due ([`crate::invoice::due`]), append everything due for one
//! organizer in one request. A repeat finds the documents and issues nothing, so a crash
//! between the append and the removal of its jobs costs nothing.
//!
//! The relay reads the invoice jobs the read model writes with priced confirmations and refunds
//! (`BATCH_MAX` at a time), issues what they are due, and removes exactly the jobs it read.

use super::Engine;
use crate::error::{EngineError, EngineResult};
use crate::failure::{JournalError, chain};
use crate::ids::{EventId, RegistrationId, StreamId, UserId};
use crate::invoice::{Context, Document, DocumentKind, LedgerEvent, Party};
use crate::model::EventRecord;
use crate::ports::StreamEvent;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::watch;

/// Jobs read per round.
const BATCH_MAX: usize = 1024;
/// Longest wait between two rounds.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Wait after a round that failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Engine {
    /// The documents issued for a registration, in number order.
    pub fn documents(&self, registration: RegistrationId) -> EngineResult<Vec<Document>> {
        self.ctx
            .store
            .documents(registration)
            .map_err(EngineError::Store)
    }

    /// An organizer's documents numbered after `after`, in number order (at most `limit`).
    pub fn ledger(
        &self,
        organizer: UserId,
        after: u64,
        limit: usize,
    ) -> EngineResult<Vec<Document>> {
        self.ctx
            .store
            .ledger(organizer, after, limit)
            .map_err(EngineError::Store)
    }

    /// Wakes the invoice relay (a registration may be due a document).
    pub(crate) fn wake_invoices(&self) {
        self.invoices_wake.notify_one();
    }

    /// Issues every document `registrations` are due, one append per organizer. Returns the
    /// documents issued.
    pub async fn issue_documents(
        &self,
        registrations: &[RegistrationId],
    ) -> EngineResult<Vec<Document>> {
        let mut by_organizer: BTreeMap<UserId, Vec<RegistrationId>> = BTreeMap::new();
        let mut events: HashMap<EventId, EventRecord> = HashMap::new();
        for &id in registrations {
            let view = match self.ctx.store.registration(id) {
                Ok(Some(view)) => view,
                Ok(None) => continue,
                Err(e) => return Err(EngineError::Store(e)),
            };
            let event = match events.entry(view.event_id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(self.event(view.event_id)?),
            };
            let organizer = event.owner.unwrap_or(UserId(uuid::Uuid::nil()));
            let list = by_organizer.entry(organizer).or_default();
            if !list.contains(&id) {
                list.push(id);
            }
        }
        let mut issued = Vec::new();
        for (organizer, ids) in by_organizer {
            issued.extend(self.issue_for(organizer, &ids, &events).await?);
        }
        Ok(issued)
    }

    /// [`Self::issue_documents`] for the registrations of one organizer.
    async fn issue_for(
        &self,
        organizer: UserId,
        ids: &[RegistrationId],
        events: &HashMap<EventId, EventRecord>,
    ) -> EngineResult<Vec<Document>> {
        let fallback_seller = self.seller_of(organizer);
        for _ in 0..super::APPEND_ATTEMPTS_MAX {
            // The head first, then the documents (see the module's comment).
            let head = self
                .ctx
                .store
                .ledger_head(organizer)
                .map_err(EngineError::Store)?;
            let now = self.ctx.clock.now();
            let mut due = Vec::new();
            for &id in ids {
                let view = self.registration(id)?;
                let cx = Context {
                    event: &events[&view.event_id],
                    organizer,
                    fallback_seller: fallback_seller.clone(),
                    now,
                };
                let mut existing = self.documents(id)?;
                while let Some(mut document) = crate::invoice::due(&view, &existing, &cx) {
                    document.number = head + 1 + due.len() as u64;
                    existing.push(document.clone());
                    due.push(document);
                }
            }
            if due.is_empty() {
                return Ok(due);
            }
            match self.append_ledger(organizer, head + 1, &due).await {
                Ok(()) => {
                    for d in &due {
                        let kind = match d.kind {
                            DocumentKind::Invoice => "invoice",
                            DocumentKind::CreditNote { .. } => "credit_note",
                        };
                        metrics::counter!("regengine_invoices_issued_total", "kind" => kind)
                            .increment(1);
                    }
                    return Ok(due);
                }
                // Another writer numbered first: decide again on its result.
                Err(JournalError::SequenceConflict { .. }) => continue,
                Err(e) => return Err(super::journal_error(e)),
            }
        }
        Err(EngineError::Unavailable(
            "invoice ledger busy; retry".into(),
        ))
    }

    /// The seller of an event without invoicing settings: its organizer's account.
    fn seller_of(&self, organizer: UserId) -> Party {
        match self.ctx.store.user(organizer) {
            Ok(Some(user)) => Party {
                name: user
                    .profile
                    .organization
                    .clone()
                    .unwrap_or_else(|| user.profile.name.clone()),
                email: user.email.clone(),
                ..Party::default()
            },
            _ => Party::default(),
        }
    }

    async fn append_ledger(
        &self,
        organizer: UserId,
        first: u64,
        documents: &[Document],
    ) -> Result<(), JournalError> {
        let events = documents
            .iter()
            .map(|d| StreamEvent::Ledger(LedgerEvent::Issued(Box::new(d.clone()))))
            .collect();
        self.append_unfenced(StreamId::Ledger(organizer), first, events)
            .await
    }

    /// Runs until `shutdown` turns true.
    pub(crate) async fn invoice_relay(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self.invoice_round().await {
                Ok(0) => IDLE_POLL,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::error!(error = %chain(&e), "issuing invoices failed; retrying");
                    RETRY_AFTER
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                () = self.invoices_wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                changed = shutdown.changed() => if changed.is_err() {
                    return;
                },
            }
        }
    }

    /// One round: the oldest jobs, their documents issued, the jobs removed. Returns how many
    /// jobs it did.
    async fn invoice_round(&self) -> EngineResult<usize> {
        let jobs = self
            .ctx
            .store
            .invoice_jobs(BATCH_MAX)
            .map_err(EngineError::Store)?;
        metrics::gauge!("regengine_invoice_jobs_waiting").set(jobs.len() as f64);
        if jobs.is_empty() {
            return Ok(0);
        }
        let registrations: Vec<RegistrationId> = jobs.iter().map(|(_, r)| *r).collect();
        self.issue_documents(&registrations).await?;
        for (id, _) in &jobs {
            self.ctx
                .store
                .invoice_job_done(*id)
                .map_err(EngineError::Store)?;
        }
        Ok(jobs.len())
    }
}
