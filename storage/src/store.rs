//! The fjall database, its keyspaces, and the engine's read port over them.

use crate::codec::{CodecError, JournalRecord, decode, record_len};
use crate::error::err;
use crate::keys;
use chrono::{DateTime, Utc};
use engine::accounts::UserRecord;
use engine::ids::{EventId, PoolId, RegistrationId, StreamId, TicketId, UserId, WaitlistEntryId};
use engine::model::{EventRecord, RegistrationStatus};
use engine::outbox::OutboxMessage;
use engine::pool::PoolState;
use engine::ports::{
    CheckInStats, EventQuery, Page, RegistrationView, Revocation, Store, StoreError, StreamEvent,
    TicketView, VoucherView, WaitlistView,
};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;

/// Most index entries a filtered registration listing examines for one page, so a filter
/// that matches little cannot turn one request into a scan of millions of keys.
pub(crate) const SCAN_KEYS_MAX: usize = 10_000;

/// Settings of the embedded database.
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// Block cache size in bytes.
    pub cache_bytes: u64,
    /// Background flush/compaction threads.
    pub worker_threads: usize,
    /// Most bytes of fjall's own write-ahead journal kept before memtables are flushed; it
    /// bounds what a start after a crash replays (fjall's minimum is 64 MiB).
    pub journal_bytes_max: u64,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 64 * 1024 * 1024,
            worker_threads: 1,
            journal_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// The embedded database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pub(crate) db: Database,
    /// Journal records: one stream's events of one flush.
    pub(crate) journal: Keyspace,
    /// Latest pool snapshot per pool.
    pub(crate) snapshots: Keyspace,
    /// Event read model (the event stream's snapshot).
    pub(crate) events: Keyspace,
    /// Registration read model.
    pub(crate) registrations: Keyspace,
    /// Index: registrations by event.
    pub(crate) reg_by_event: Keyspace,
    /// Index: registrations by attendee e-mail.
    pub(crate) reg_by_email: Keyspace,
    /// Index: registrations by the signed-in account that holds them.
    pub(crate) reg_by_user: Keyspace,
    /// Index: (event, idempotency key digest) → registration id + request digest.
    pub(crate) idempotency: Keyspace,
    /// Ticket read model.
    pub(crate) tickets: Keyspace,
    /// Tickets' first admissions, by ticket id: written on its own by each scan that moves
    /// a ticket's first admission, so scans never read and rewrite the ticket row. Takes
    /// precedence over the row's own `admission` (which rows written before it hold).
    pub(crate) ticket_admissions: Keyspace,
    /// User accounts (each user stream's snapshot).
    pub(crate) users: Keyspace,
    /// Index: normalised e-mail → user id.
    pub(crate) users_by_email: Keyspace,
    /// The audit log (see `audit`).
    pub(crate) audit: Keyspace,
    /// Messages waiting for delivery, by id (UUIDv7: creation order).
    pub(crate) outbox: Keyspace,
    /// Messages the relay gave up on, by id, as they were in the outbox.
    pub(crate) outbox_dead: Keyspace,
    /// Revoked tickets per event, numbered (see `keys::revocation`).
    pub(crate) revocations: Keyspace,
    /// Check-in statistics per event.
    pub(crate) checkin_stats: Keyspace,
    /// Vouchers per event, by code (see `keys::voucher`).
    pub(crate) vouchers: Keyspace,
    /// Waiting-list places, by id.
    pub(crate) waitlist: Keyspace,
    /// Index: `provider:reference` of a payment (a PaymentIntent, an order) → registration
    /// id, so a provider's report that names only its payment finds its registration.
    pub(crate) payment_refs: Keyspace,
    /// Provider calls to make, by job id (the provider relay's work; a refund's job is
    /// removed with its answer, a cancellation's when it was made).
    pub(crate) provider_jobs: Keyspace,
    /// Invoices and credit notes, by registration (16) + ledger number (8) (see `invoice`).
    pub(crate) documents: Keyspace,
    /// Index: organizer (16) + ledger number (8) → registration id: an organizer's ledger in
    /// number order.
    pub(crate) ledger: Keyspace,
    /// Registrations that may be due a document, by job id (UUIDv7) → registration id (the
    /// invoice relay's work).
    pub(crate) invoice_jobs: Keyspace,
    /// Bank-statement exceptions, by event (16) + line id (see `statement`).
    pub(crate) statement_exceptions: Keyspace,
    /// Messages kept for their deliveries, by id (see `deliveries`).
    pub(crate) messages: Keyspace,
    /// Deliveries, by message (16) + channel (1).
    pub(crate) deliveries: Keyspace,
    /// Queued deliveries per channel in due order: channel (1) + due ms (8) + message (16).
    pub(crate) delivery_queue: Keyspace,
    /// Index of the dead deliveries: message (16) + channel (1).
    pub(crate) deliveries_dead: Keyspace,
    /// Index of the finished deliveries by when: ms (8) + message (16) + channel (1).
    pub(crate) deliveries_done: Keyspace,
    /// In-app inboxes: user (16) + message id (16) → entry (see `inbox`).
    pub(crate) inbox: Keyspace,
    /// Each in-app inbox's size and oldest entry: user (16) → count (4) + id (16).
    pub(crate) inbox_meta: Keyspace,
    /// Organizer webhook endpoints, by id (see `webhooks`).
    pub(crate) webhook_endpoints: Keyspace,
    /// Each endpoint's delivery log: endpoint (16) + message id (16) → entry.
    pub(crate) webhook_log: Keyspace,
    /// The reminder schedule: due ms (8) + event (16) + offset (4) (see `schedule`).
    pub(crate) schedule: Keyspace,
    /// Managers' broadcasts: event (16) + id (16) (see `broadcasts`).
    pub(crate) broadcasts: Keyspace,
    /// Broadcasts still queueing their messages: id (16) → event (16).
    pub(crate) broadcast_queue: Keyspace,
    /// The endpoints by scope, in memory.
    pub(crate) hooks: std::sync::Arc<crate::hook_index::HookIndex>,
    /// Deliveries' row locks and queued counts.
    pub(crate) delivery_state: std::sync::Arc<crate::delivery_state::DeliveryState>,
}

impl Db {
    /// Opens (or creates) the database in `path`.
    pub fn open(path: &Path, options: &DbOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(err)?;
        let db = Database::builder(path)
            .cache_size(options.cache_bytes)
            // The gateway's configuration refuses values under these floors; other callers
            // (tests, benches) get the floor rather than a store that cannot run.
            .worker_threads(options.worker_threads.max(1))
            .max_journaling_size(options.journal_bytes_max.max(64 * 1024 * 1024))
            .open()
            .map_err(err)?;
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(err)
        };
        Ok(Self {
            journal: ks("journal")?,
            snapshots: ks("snapshots")?,
            events: ks("events")?,
            registrations: ks("registrations")?,
            reg_by_event: ks("reg_by_event")?,
            reg_by_email: ks("reg_by_email")?,
            reg_by_user: ks("reg_by_user")?,
            idempotency: ks("idempotency")?,
            tickets: ks("tickets")?,
            ticket_admissions: ks("ticket_admissions")?,
            users: ks("users")?,
            users_by_email: ks("users_by_email")?,
            audit: ks("audit")?,
            outbox: ks("outbox")?,
            outbox_dead: ks("outbox_dead")?,
            revocations: ks("revocations")?,
            checkin_stats: ks("checkin_stats")?,
            vouchers: ks("vouchers")?,
            waitlist: ks("waitlist")?,
            payment_refs: ks("payment_refs")?,
            provider_jobs: ks("provider_jobs")?,
            documents: ks("documents")?,
            ledger: ks("ledger")?,
            invoice_jobs: ks("invoice_jobs")?,
            statement_exceptions: ks("statement_exceptions")?,
            messages: ks("messages")?,
            deliveries: ks("deliveries")?,
            delivery_queue: ks("delivery_queue")?,
            deliveries_dead: ks("deliveries_dead")?,
            deliveries_done: ks("deliveries_done")?,
            inbox: ks("inbox")?,
            inbox_meta: ks("inbox_meta")?,
            webhook_endpoints: ks("webhook_endpoints")?,
            webhook_log: ks("webhook_log")?,
            schedule: ks("schedule")?,
            broadcasts: ks("broadcasts")?,
            broadcast_queue: ks("broadcast_queue")?,
            hooks: Default::default(),
            delivery_state: Default::default(),
            db,
        })
        .and_then(|db: Self| {
            db.count_queued()?;
            db.load_webhooks()?;
            Ok(db)
        })
    }

    /// The event's latest revocation version (0: none).
    pub(crate) fn revocation_head(&self, event: &EventId) -> Result<u64, StoreError> {
        let start = keys::revocation(event, 0);
        let end = keys::revocation(event, u64::MAX);
        match self.revocations.range(start..=end).next_back() {
            Some(guard) => {
                let (key, _) = guard.into_inner().map_err(err)?;
                let version: [u8; 8] = key
                    .get(16..24)
                    .and_then(|v| v.try_into().ok())
                    .ok_or(CodecError::Key("revocations"))?;
                Ok(u64::from_be_bytes(version))
            }
            None => Ok(0),
        }
    }

    /// Syncs everything written so far to disk.
    pub fn persist(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncAll).map_err(err)
    }

    /// Flushes memtables to disk tables and syncs, so the next start replays little.
    pub fn close(&self) -> Result<(), StoreError> {
        for ks in self.all() {
            ks.rotate_memtable_and_wait().map_err(err)?;
        }
        self.db.persist(PersistMode::SyncAll).map_err(err)
    }

    fn all(&self) -> [&Keyspace; 37] {
        [
            &self.journal,
            &self.snapshots,
            &self.events,
            &self.registrations,
            &self.reg_by_event,
            &self.reg_by_email,
            &self.reg_by_user,
            &self.idempotency,
            &self.tickets,
            &self.ticket_admissions,
            &self.users,
            &self.users_by_email,
            &self.audit,
            &self.outbox,
            &self.outbox_dead,
            &self.revocations,
            &self.checkin_stats,
            &self.vouchers,
            &self.waitlist,
            &self.payment_refs,
            &self.provider_jobs,
            &self.documents,
            &self.ledger,
            &self.invoice_jobs,
            &self.statement_exceptions,
            &self.messages,
            &self.deliveries,
            &self.delivery_queue,
            &self.deliveries_dead,
            &self.deliveries_done,
            &self.inbox,
            &self.inbox_meta,
            &self.webhook_endpoints,
            &self.webhook_log,
            &self.schedule,
            &self.broadcasts,
            &self.broadcast_queue,
        ]
    }

    /// Last durable sequence number of a stream (0 if it has none): the stream's last journal
    /// record starts at the sequence number in its key and holds `record_len` events. (The
    /// writer keeps heads in memory; this runs once per stream it has not seen yet.)
    pub fn head(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let last = self
            .journal
            .range(keys::journal(stream, 0)..=keys::journal(stream, u64::MAX))
            .next_back();
        let Some(guard) = last else {
            return Ok(0);
        };
        let (key, value) = guard.into_inner().map_err(err)?;
        let first = keys::journal_seq(&key).ok_or(CodecError::Key("journal"))?;
        Ok(first + record_len(&value).map_err(err)? - 1)
    }

    fn get<T: serde::de::DeserializeOwned>(
        ks: &Keyspace,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match ks.get(key).map_err(err)? {
            Some(bytes) => Ok(Some(decode(&bytes).map_err(err)?)),
            None => Ok(None),
        }
    }
}

impl Store for Db {
    fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        Self::get(&self.events, id.as_bytes())
    }

    fn events(
        &self,
        query: &EventQuery,
        now: DateTime<Utc>,
    ) -> Result<Page<EventRecord, EventId>, StoreError> {
        let start = match query.after {
            Some(id) => {
                let mut k = id.as_bytes().to_vec();
                k.push(0);
                k
            }
            None => vec![],
        };
        let mut items = Vec::new();
        for guard in self.events.range(start..) {
            let (_, value) = guard.into_inner().map_err(err)?;
            let record: EventRecord = decode(&value).map_err(err)?;
            if !query.matches(&record, now) {
                continue;
            }
            if items.len() == query.limit {
                let next = items.last().map(|r: &EventRecord| r.id);
                return Ok(Page { items, next });
            }
            items.push(record);
        }
        Ok(Page { items, next: None })
    }

    fn pool_snapshot(&self, id: PoolId) -> Result<Option<PoolState>, StoreError> {
        Self::get(&self.snapshots, &StreamId::Pool(id).key())
    }

    fn replay(
        &self,
        stream: StreamId,
        after_seq: u64,
        f: &mut dyn FnMut(u64, StreamEvent) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Start at the record that holds `after_seq + 1` (the last one starting at or before it).
        let first_wanted = after_seq + 1;
        let start = self
            .journal
            .range(keys::journal(&stream, 0)..=keys::journal(&stream, first_wanted))
            .next_back()
            .map(|g| g.key().map_err(err))
            .transpose()?
            .map(|k| k.to_vec())
            .unwrap_or_else(|| keys::journal(&stream, first_wanted).to_vec());
        let end = keys::journal(&stream, u64::MAX);
        let mut expected = first_wanted;
        for guard in self.journal.range(start..=end.to_vec()) {
            let (key, value) = guard.into_inner().map_err(err)?;
            let first = keys::journal_seq(&key).ok_or(CodecError::Key("journal"))?;
            let record: JournalRecord = decode(&value).map_err(err)?;
            for (i, event) in record.events.into_iter().enumerate() {
                let seq = first + i as u64;
                if seq < expected {
                    continue;
                }
                if seq != expected {
                    return Err(StoreError::Inconsistent(format!(
                        "journal gap in {stream}: expected {expected}, found {seq}"
                    )));
                }
                f(seq, event)?;
                expected += 1;
            }
        }
        Ok(())
    }

    fn registration(&self, id: RegistrationId) -> Result<Option<RegistrationView>, StoreError> {
        Self::get(&self.registrations, id.as_bytes())
    }

    fn registrations_by_event(
        &self,
        event: EventId,
        status: Option<RegistrationStatus>,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> Result<Page<RegistrationView, RegistrationId>, StoreError> {
        self.registrations_in(&self.reg_by_event, event.as_bytes(), after, status, limit)
    }

    fn registrations_by_email(
        &self,
        email: &str,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> Result<Page<RegistrationView, RegistrationId>, StoreError> {
        self.registrations_in(
            &self.reg_by_email,
            &keys::email_prefix(email),
            after,
            None,
            limit,
        )
    }

    fn registrations_by_user(
        &self,
        user: UserId,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> Result<Page<RegistrationView, RegistrationId>, StoreError> {
        self.registrations_in(&self.reg_by_user, user.as_bytes(), after, None, limit)
    }

    fn idempotent(
        &self,
        event: EventId,
        key: [u8; 16],
    ) -> Result<Option<(uuid::Uuid, [u8; 16])>, StoreError> {
        let Some(value) = self
            .idempotency
            .get(keys::idempotency(&event, &key))
            .map_err(err)?
        else {
            return Ok(None);
        };
        let bytes: &[u8] = value.as_ref();
        if bytes.len() != 32 {
            return Err(CodecError::Key("idempotency").into());
        }
        let id = uuid::Uuid::from_slice(&bytes[..16]).map_err(err)?;
        let mut request = [0u8; 16];
        request.copy_from_slice(&bytes[16..]);
        Ok(Some((id, request)))
    }

    fn ticket(&self, id: TicketId) -> Result<Option<TicketView>, StoreError> {
        let Some(mut ticket) = Self::get::<TicketView>(&self.tickets, id.as_bytes())? else {
            return Ok(None);
        };
        if let Some(first) = Self::get(&self.ticket_admissions, id.as_bytes())? {
            ticket.admission = Some(first);
        }
        Ok(Some(ticket))
    }

    fn user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        Self::get(&self.users, id.as_bytes())
    }

    fn user_by_email(&self, email: &str) -> Result<Option<UserId>, StoreError> {
        match self.users_by_email.get(email.as_bytes()).map_err(err)? {
            Some(bytes) => {
                let id = uuid::Uuid::from_slice(&bytes).map_err(err)?;
                Ok(Some(UserId(id)))
            }
            None => Ok(None),
        }
    }

    fn ledger_head(&self, organizer: UserId) -> Result<u64, StoreError> {
        self.head(&StreamId::Ledger(organizer))
    }

    fn documents(
        &self,
        registration: RegistrationId,
    ) -> Result<Vec<engine::invoice::Document>, StoreError> {
        let mut documents = Vec::new();
        for guard in self.documents.prefix(registration.as_bytes()) {
            let (_, value) = guard.into_inner().map_err(err)?;
            documents.push(decode(&value).map_err(StoreError::from)?);
        }
        Ok(documents)
    }

    fn ledger(
        &self,
        organizer: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<engine::invoice::Document>, StoreError> {
        let start = keys::ledger(&organizer, after.saturating_add(1));
        let end = keys::ledger(&organizer, u64::MAX);
        let mut documents = Vec::new();
        for guard in self.ledger.range(start..=end).take(limit) {
            let (key, value) = guard.into_inner().map_err(err)?;
            let number: [u8; 8] = key
                .get(16..24)
                .and_then(|n| n.try_into().ok())
                .ok_or(CodecError::Key("ledger"))?;
            let number = u64::from_be_bytes(number);
            let registration = RegistrationId(uuid::Uuid::from_slice(&value).map_err(err)?);
            let bytes = self
                .documents
                .get(keys::document(&registration, number))
                .map_err(err)?
                .ok_or_else(|| {
                    StoreError::Inconsistent(format!("ledger row {number} without its document"))
                })?;
            documents.push(decode(&bytes).map_err(StoreError::from)?);
        }
        Ok(documents)
    }

    fn invoice_jobs(&self, limit: usize) -> Result<Vec<(uuid::Uuid, RegistrationId)>, StoreError> {
        let mut jobs = Vec::new();
        for guard in self.invoice_jobs.iter().take(limit) {
            let (key, value) = guard.into_inner().map_err(err)?;
            let id = uuid::Uuid::from_slice(&key).map_err(err)?;
            let registration = uuid::Uuid::from_slice(&value).map_err(err)?;
            jobs.push((id, RegistrationId(registration)));
        }
        Ok(jobs)
    }

    fn statements_head(&self, event: EventId) -> Result<u64, StoreError> {
        self.head(&StreamId::Statements(event))
    }

    fn statement_exception(
        &self,
        event: EventId,
        line_id: &str,
    ) -> Result<Option<engine::statement::Exception>, StoreError> {
        Self::get(
            &self.statement_exceptions,
            &keys::statement_exception(&event, line_id),
        )
    }

    fn statement_exceptions(
        &self,
        event: EventId,
    ) -> Result<Vec<engine::statement::Exception>, StoreError> {
        let mut rows = Vec::new();
        for guard in self.statement_exceptions.prefix(event.as_bytes()) {
            let (_, value) = guard.into_inner().map_err(err)?;
            rows.push(decode(&value).map_err(StoreError::from)?);
        }
        Ok(rows)
    }

    fn invoice_job_done(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        self.invoice_jobs.remove(id.as_bytes()).map_err(err)
    }

    fn provider_job_done(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        self.provider_jobs.remove(id.as_bytes()).map_err(err)
    }

    fn provider_jobs(&self, limit: usize) -> Result<Vec<engine::payment::ProviderJob>, StoreError> {
        let mut jobs = Vec::new();
        for guard in self.provider_jobs.iter().take(limit) {
            let (_, value) = guard.into_inner().map_err(err)?;
            jobs.push(decode(&value).map_err(StoreError::from)?);
        }
        Ok(jobs)
    }

    fn registration_by_payment_ref(
        &self,
        provider: engine::payment::Provider,
        reference: &str,
    ) -> Result<Option<RegistrationId>, StoreError> {
        let key = keys::payment_ref(provider, reference);
        match self.payment_refs.get(key).map_err(err)? {
            Some(bytes) => {
                let id = uuid::Uuid::from_slice(&bytes).map_err(err)?;
                Ok(Some(RegistrationId(id)))
            }
            None => Ok(None),
        }
    }

    fn outbox(
        &self,
        limit: usize,
    ) -> Result<Vec<(uuid::Uuid, Result<OutboxMessage, StoreError>)>, StoreError> {
        let mut items = Vec::new();
        for guard in self.outbox.iter().take(limit) {
            let (key, value) = guard.into_inner().map_err(err)?;
            let id = uuid::Uuid::from_slice(&key).map_err(err)?;
            items.push((id, decode(&value).map_err(StoreError::from)));
        }
        Ok(items)
    }

    fn checkin_stats(&self, event: EventId) -> Result<CheckInStats, StoreError> {
        Ok(Self::get(&self.checkin_stats, event.as_bytes())?.unwrap_or_default())
    }

    fn revocations(
        &self,
        event: EventId,
        since: u64,
        limit: usize,
    ) -> Result<(Vec<Revocation>, u64), StoreError> {
        let latest = self.revocation_head(&event).map_err(err)?;
        let start = keys::revocation(&event, since.saturating_add(1));
        let end = keys::revocation(&event, u64::MAX);
        let mut items = Vec::new();
        for guard in self.revocations.range(start..=end).take(limit) {
            let (_, value) = guard.into_inner().map_err(err)?;
            items.push(decode(&value).map_err(err)?);
        }
        Ok((items, latest))
    }

    fn waitlist_entry(&self, id: WaitlistEntryId) -> Result<Option<WaitlistView>, StoreError> {
        Self::get(&self.waitlist, id.as_bytes())
    }

    fn voucher(&self, event: EventId, code: &str) -> Result<Option<VoucherView>, StoreError> {
        Self::get(&self.vouchers, &keys::voucher(&event, code))
    }

    fn vouchers(
        &self,
        event: EventId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<VoucherView, String>, StoreError> {
        let prefix = event.as_bytes().to_vec();
        let start = match after {
            // The smallest key after `after`'s.
            Some(code) => {
                let mut key = keys::voucher(&event, code);
                key.push(0);
                key
            }
            None => prefix.clone(),
        };
        let mut items: Vec<VoucherView> = Vec::new();
        for guard in self.vouchers.range(start..).take(limit + 1) {
            let (key, value) = guard.into_inner().map_err(err)?;
            if !key.starts_with(&prefix) {
                break;
            }
            items.push(decode(&value).map_err(err)?);
        }
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|v| v.voucher.def.code.clone())
        });
        Ok(Page {
            items,
            next: next.flatten(),
        })
    }

    fn outbox_len(&self) -> Result<usize, StoreError> {
        self.outbox.len().map_err(err)
    }

    fn outbox_remove(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        self.outbox.remove(id.as_bytes().to_vec()).map_err(err)
    }

    fn fan_out(
        &self,
        message: &OutboxMessage,
        deliveries: &[engine::notify::Delivery],
    ) -> Result<(), StoreError> {
        self.fan_out_message(message, deliveries)
    }

    fn deliveries_due(
        &self,
        channel: engine::notify::Channel,
        until: chrono::DateTime<chrono::Utc>,
        limit: usize,
        skip: &std::collections::HashSet<uuid::Uuid>,
    ) -> Result<Vec<(engine::notify::Delivery, Result<OutboxMessage, StoreError>)>, StoreError>
    {
        self.due_deliveries(channel, until, limit, skip)
    }

    fn next_delivery_due(
        &self,
        channel: engine::notify::Channel,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        self.first_due(channel)
    }

    fn delivery_backlog(
        &self,
        channel: engine::notify::Channel,
    ) -> Result<(usize, Option<chrono::DateTime<chrono::Utc>>), StoreError> {
        self.backlog(channel)
    }

    fn delivery_update(
        &self,
        before: &engine::notify::Delivery,
        after: &engine::notify::Delivery,
    ) -> Result<bool, StoreError> {
        self.update_delivery(before, after)
    }

    fn prune_deliveries(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.prune(before, limit)
    }

    fn next_reminder(&self) -> Result<Option<engine::notify::ScheduledReminder>, StoreError> {
        self.first_reminder()
    }

    fn reminder_step(
        &self,
        reminder: &engine::notify::ScheduledReminder,
        limit: usize,
        channels: engine::notify::Channels,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, StoreError> {
        self.queue_reminders(reminder, limit, channels, now)
    }

    fn next_broadcast(&self) -> Result<Option<engine::notify::broadcasts::Broadcast>, StoreError> {
        self.first_queued_broadcast()
    }

    fn broadcast_step(
        &self,
        broadcast: &engine::notify::broadcasts::Broadcast,
        limit: usize,
        channels: engine::notify::Channels,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.queue_broadcast(broadcast, limit, channels, now)
    }

    fn broadcast(
        &self,
        event: EventId,
        id: uuid::Uuid,
    ) -> Result<Option<engine::notify::broadcasts::Broadcast>, StoreError> {
        self.read_broadcast(event, id)
    }

    fn reminder_drop(
        &self,
        reminder: &engine::notify::ScheduledReminder,
    ) -> Result<(), StoreError> {
        self.drop_reminder(reminder)
    }

    fn delivery(
        &self,
        message: uuid::Uuid,
        channel: engine::notify::Channel,
    ) -> Result<Option<engine::notify::Delivery>, StoreError> {
        self.delivery_row(&message, channel)
    }

    fn notify_message(&self, id: uuid::Uuid) -> Result<Option<OutboxMessage>, StoreError> {
        self.kept_message(id)
    }

    fn dead_deliveries(
        &self,
        after: Option<(uuid::Uuid, engine::notify::Channel)>,
        limit: usize,
    ) -> Result<Vec<engine::notify::Delivery>, StoreError> {
        self.dead(after, limit)
    }

    fn delivery_discard(
        &self,
        message: uuid::Uuid,
        channel: engine::notify::Channel,
    ) -> Result<bool, StoreError> {
        self.discard(message, channel)
    }

    fn outbox_dead_letter(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        let key = id.as_bytes().to_vec();
        let Some(value) = self.outbox.get(&key).map_err(err)? else {
            return Ok(());
        };
        let mut batch = self.db.batch();
        batch.insert(&self.outbox_dead, key.clone(), value);
        batch.remove(&self.outbox, key);
        batch.commit().map_err(err)
    }
}
