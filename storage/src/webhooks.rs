//! Organizer webhook endpoints (`webhook_endpoints`: id → endpoint) and each endpoint's
//! delivery log (`webhook_log`: endpoint (16) + message id (16) → what the delivery says), with
//! an index of the endpoints in memory (`HookIndex`) that the read model asks, per happening,
//! which endpoints want it: nothing is looked up in the store while no endpoint exists.
//!
//! A delivery's status is its row in `deliveries` (channel `webhook`); the log entry outlives
//! a finished row's pruning by nothing: both go after the retention, the entry only once its
//! delivery is finished or gone (a dead or queued delivery keeps what it has to say).

use crate::codec::{decode, encode};
use crate::error::{CodecError, err};
use crate::store::Db;
use chrono::{DateTime, Utc};
use engine::ids::{EventId, UserId};
use engine::model::EventRecord;
use engine::notify::{Channel, Delivery, DeliveryStatus};
use engine::ports::StoreError;
use engine::webhooks::{Endpoint, LogEntry, Scope};
use uuid::Uuid;

/// `webhook_log`: endpoint (16) + message (16).
fn log_key(endpoint: &Uuid, message: &Uuid) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(endpoint.as_bytes());
    key[16..].copy_from_slice(message.as_bytes());
    key
}

/// Whether a delivery no longer needs its log entry.
fn finished(delivery: Option<&Delivery>) -> bool {
    delivery.is_none_or(|d| !matches!(d.status, DeliveryStatus::Queued | DeliveryStatus::Failed))
}

impl Db {
    /// Loads the endpoints into the index (when the store opens).
    pub(crate) fn load_webhooks(&self) -> Result<(), StoreError> {
        for guard in self.webhook_endpoints.iter() {
            let (_, value) = guard.into_inner().map_err(err)?;
            let endpoint: Endpoint = decode(&value)?;
            self.hooks.put(&endpoint);
        }
        Ok(())
    }

    /// The owner of `event`, as its record in the store says (remembered).
    pub(crate) fn event_owner(&self, event: EventId) -> Result<Option<UserId>, StoreError> {
        if let Some(owner) = self.hooks.owner(event) {
            return Ok(owner);
        }
        let Some(bytes) = self.events.get(event.as_bytes()).map_err(err)? else {
            // Created in this very batch, or gone: not remembered, asked again next time.
            return Ok(None);
        };
        let record: EventRecord = decode(&bytes)?;
        self.hooks.learn_owner(event, record.owner);
        Ok(record.owner)
    }

    /// Creates or replaces an endpoint.
    pub fn webhook_put(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        self.webhook_endpoints
            .insert(endpoint.id.as_bytes(), encode(endpoint).map_err(err)?)
            .map_err(err)?;
        self.hooks.put(endpoint);
        Ok(())
    }

    /// Removes an endpoint (its log goes with the retention); whether it existed.
    /// Its log goes with it (a delivery still queued is then skipped: its endpoint is gone).
    pub fn webhook_delete(&self, id: Uuid) -> Result<bool, StoreError> {
        let existed = self.webhook_endpoint(id)?.is_some();
        self.webhook_endpoints.remove(id.as_bytes()).map_err(err)?;
        self.hooks.remove(id);
        loop {
            let range = log_key(&id, &Uuid::nil())..=log_key(&id, &Uuid::max());
            let keys: Vec<Vec<u8>> = self
                .webhook_log
                .range(range)
                .take(1_000)
                .map(|guard| guard.key().map(|k| k.to_vec()))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            if keys.is_empty() {
                return Ok(existed);
            }
            let mut batch = self.db.batch();
            for key in keys {
                batch.remove(&self.webhook_log, key);
            }
            batch.commit().map_err(err)?;
            self.delivery_state.committed();
        }
    }

    pub fn webhook_endpoint(&self, id: Uuid) -> Result<Option<Endpoint>, StoreError> {
        match self.webhook_endpoints.get(id.as_bytes()).map_err(err)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// A scope's endpoints, oldest first.
    pub fn webhook_endpoints_of(&self, scope: Scope) -> Result<Vec<Endpoint>, StoreError> {
        let mut endpoints = Vec::new();
        for id in self.hooks.of_scope(scope) {
            if let Some(endpoint) = self.webhook_endpoint(id)? {
                endpoints.push(endpoint);
            }
        }
        endpoints.sort_by_key(|e| e.id);
        Ok(endpoints)
    }

    /// A log entry into `batch`, with its message and its queued delivery.
    pub(crate) fn stage_hook(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        entry: &LogEntry,
    ) -> Result<(), StoreError> {
        let message = engine::notify::webhook_message(entry);
        let delivery = Delivery::queued(&message, Channel::Webhook, entry.at);
        batch.insert(
            &self.webhook_log,
            log_key(&entry.endpoint_id, &entry.message_id).to_vec(),
            encode(entry).map_err(err)?,
        );
        self.stage_deliveries(batch, &message, std::slice::from_ref(&delivery))
    }

    pub fn webhook_log_entry(
        &self,
        endpoint: Uuid,
        message: Uuid,
    ) -> Result<Option<LogEntry>, StoreError> {
        match self
            .webhook_log
            .get(log_key(&endpoint, &message))
            .map_err(err)?
        {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// An endpoint's log, newest first, from before `before`, at most `limit`: each entry
    /// with its delivery (none once pruned).
    pub fn webhook_log(
        &self,
        endpoint: Uuid,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<(LogEntry, Option<Delivery>)>, StoreError> {
        let start = log_key(&endpoint, &Uuid::nil());
        let end = log_key(&endpoint, &before.unwrap_or(Uuid::max()));
        let mut items = Vec::new();
        for guard in self.webhook_log.range(start..end).rev().take(limit) {
            let (_, value) = guard.into_inner().map_err(err)?;
            let entry: LogEntry = decode(&value)?;
            let delivery = self.delivery_row(&entry.message_id, Channel::Webhook)?;
            items.push((entry, delivery));
        }
        Ok(items)
    }

    /// Queues a logged delivery again, due `now`, its attempts counted afresh (whatever
    /// became of it, unless it is queued already: then it is answered as it is). `None` if
    /// the log has no such entry.
    pub fn webhook_replay(
        &self,
        endpoint: Uuid,
        message: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Delivery>, StoreError> {
        let Some(entry) = self.webhook_log_entry(endpoint, message)? else {
            return Ok(None);
        };
        let _row = self.delivery_state.lock(&message);
        let before = self.delivery_row(&message, Channel::Webhook)?;
        if let Some(row) = &before
            && row.status == DeliveryStatus::Queued
        {
            return Ok(Some(row.clone()));
        }
        let message_row = engine::notify::webhook_message(&entry);
        let mut queued = Delivery::queued(&message_row, Channel::Webhook, now);
        if let Some(row) = &before {
            queued.created_at = row.created_at;
        }
        let mut batch = self.db.batch();
        let mut delta = 0;
        if let Some(row) = &before {
            delta += self.unstage_row(&mut batch, row);
        }
        // The message again (dropped once its delivery finished), then the row; counted
        // once written.
        batch.insert(
            &self.messages,
            message.as_bytes().to_vec(),
            encode(&message_row).map_err(err)?,
        );
        delta += self.stage_row(&mut batch, &queued)?;
        batch.commit().map_err(err)?;
        self.delivery_state.committed();
        self.delivery_state.count(Channel::Webhook, delta);
        Ok(Some(queued))
    }

    /// Removes up to `limit` log entries older than `before` whose delivery is finished or
    /// gone; how many.
    pub(crate) fn prune_webhook_log(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let millis = u64::try_from(before.timestamp_millis()).unwrap_or(0);
        let cut = uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid();
        let (mut pruned, mut visited) = (0, 0);
        let mut last: Option<[u8; 32]> = None;
        // Each round resumes where the last one stopped, so entries that stay (dead or
        // queued) cannot keep the rest from being looked at.
        let resume = self.hooks.take_prune_cursor();
        let mut endpoints = self.hooks.all();
        endpoints.sort_unstable();
        for endpoint in endpoints {
            let mut start = log_key(&endpoint, &Uuid::nil()).to_vec();
            if let Some(cursor) = &resume {
                match cursor[..16].cmp(endpoint.as_bytes()) {
                    std::cmp::Ordering::Greater => continue,
                    std::cmp::Ordering::Equal => {
                        start = cursor.to_vec();
                        start.push(0);
                    }
                    std::cmp::Ordering::Less => {}
                }
            }
            let range = start..log_key(&endpoint, &cut).to_vec();
            for guard in self.webhook_log.range(range) {
                let key = guard.key().map_err(err)?;
                // Bounded work per round, counting what stays (dead, queued) too.
                if visited >= limit {
                    self.hooks.set_prune_cursor(last);
                    return Ok(pruned);
                }
                visited += 1;
                last = key[..].try_into().ok();
                let message = key
                    .get(16..32)
                    .and_then(|b| Uuid::from_slice(b).ok())
                    .ok_or(CodecError::Key("webhook_log"))?;
                // Under the row's lock: a replay cannot queue it again in between.
                let _row = self.delivery_state.lock(&message);
                if finished(self.delivery_row(&message, Channel::Webhook)?.as_ref()) {
                    self.webhook_log.remove(key.to_vec()).map_err(err)?;
                    pruned += 1;
                }
            }
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DbOptions;
    use engine::webhooks::{EventData, Happening, HookData, HookType, HookTypes};

    /// Now, as stored: to the millisecond.
    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
    }

    fn endpoint(scope: Scope, types: HookTypes) -> Endpoint {
        let now = now();
        Endpoint {
            id: Uuid::now_v7(),
            scope,
            url: "https://hooks.example/in".into(),
            types,
            description: String::new(),
            enabled: true,
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            previous_secret: None,
            previous_until: None,
            created_by: UserId::new(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn the_index_finds_an_events_and_its_owners_endpoints_by_type_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (event, owner) = (EventId::new(), UserId::new());
        let only_held = HookTypes::of([HookType::RegistrationHeld]);
        let (a, b) = (
            endpoint(Scope::Event(event), HookTypes::default()),
            endpoint(Scope::Organizer(owner), only_held),
        );
        {
            let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
            assert!(!db.hooks.active());
            db.webhook_put(&a).unwrap();
            db.webhook_put(&b).unwrap();
            db.persist().unwrap();
        }
        let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
        assert!(db.hooks.active());
        let held = db
            .hooks
            .targets(event, Some(owner), HookType::RegistrationHeld);
        assert_eq!(held, [a.id, b.id]);
        let canceled = db
            .hooks
            .targets(event, Some(owner), HookType::RegistrationCanceled);
        assert_eq!(canceled, [a.id]);
        assert!(
            db.hooks
                .targets(EventId::new(), None, HookType::RegistrationHeld)
                .is_empty()
        );
        let mut off = a.clone();
        off.enabled = false;
        db.webhook_put(&off).unwrap();
        assert!(
            db.hooks
                .targets(event, None, HookType::EventChanged)
                .is_empty()
        );
        assert_eq!(db.webhook_endpoints_of(Scope::Event(event)).unwrap(), [off]);
        assert!(db.webhook_delete(b.id).unwrap());
        assert!(!db.hooks.active(), "only a disabled one is left");
    }

    #[test]
    fn a_logged_delivery_is_listed_newest_first_replayed_and_pruned_once_finished() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
        let event = EventId::new();
        let e = endpoint(Scope::Event(event), HookTypes::default());
        db.webhook_put(&e).unwrap();
        let at = now() - chrono::Duration::seconds(10);
        let entries: Vec<LogEntry> = (0..3)
            .map(|i| {
                engine::webhooks::entry(
                    e.id,
                    &Happening {
                        kind: HookType::EventChanged,
                        event_id: event,
                        subject: event.0,
                        at: at + chrono::Duration::milliseconds(i),
                        data: HookData::Event(EventData {
                            event_id: event,
                            title: "t".into(),
                            status: "published".into(),
                            starts_at: at,
                            ends_at: at,
                            version: 1,
                            changed: vec!["title".into()],
                        }),
                    },
                )
            })
            .collect();
        let mut batch = db.db.batch();
        for entry in &entries {
            db.stage_hook(&mut batch, entry).unwrap();
        }
        batch.commit().unwrap();
        let log = db.webhook_log(e.id, None, 10).unwrap();
        let ids: Vec<Uuid> = log.iter().map(|(l, _)| l.message_id).collect();
        assert_eq!(
            ids,
            [
                entries[2].message_id,
                entries[1].message_id,
                entries[0].message_id
            ]
        );
        assert!(
            log.iter()
                .all(|(_, d)| d.as_ref().unwrap().status == DeliveryStatus::Queued)
        );
        let older = db
            .webhook_log(e.id, Some(entries[1].message_id), 10)
            .unwrap();
        assert_eq!(older.len(), 1);
        assert_eq!(older[0].0, entries[0]);

        // Sent: the message row goes, the entry stays; a replay queues it again.
        let first = entries[0].message_id;
        let queued = db.delivery_row(&first, Channel::Webhook).unwrap().unwrap();
        let mut sent = queued.clone();
        sent.status = DeliveryStatus::Sent;
        sent.attempts = 1;
        assert!(db.update_delivery(&queued, &sent).unwrap());
        assert!(db.kept_message(first).unwrap().is_none());
        let now = Utc::now();
        let again = db.webhook_replay(e.id, first, now).unwrap().unwrap();
        assert_eq!((again.status, again.attempts), (DeliveryStatus::Queued, 0));
        assert!(db.kept_message(first).unwrap().is_some());
        assert_eq!(db.delivery_state.queued(Channel::Webhook), 3);
        assert!(
            db.webhook_replay(e.id, Uuid::now_v7(), now)
                .unwrap()
                .is_none()
        );

        // Only finished entries older than the cut are pruned.
        let cut = Utc::now() + chrono::Duration::seconds(1);
        assert_eq!(db.prune_webhook_log(cut, 10).unwrap(), 0);
        let row = db.delivery_row(&first, Channel::Webhook).unwrap().unwrap();
        let mut done = row.clone();
        done.status = DeliveryStatus::Sent;
        assert!(db.update_delivery(&row, &done).unwrap());
        assert_eq!(db.prune_webhook_log(cut, 10).unwrap(), 1);
        assert_eq!(db.webhook_log(e.id, None, 10).unwrap().len(), 2);

        // Two dead ones ahead of a finished one: a round of two looks at the dead ones, the
        // next goes on from there instead of starting over.
        for entry in &entries[1..] {
            let row = db
                .delivery_row(&entry.message_id, Channel::Webhook)
                .unwrap()
                .unwrap();
            let mut next = row.clone();
            next.status = if entry.message_id == entries[2].message_id {
                DeliveryStatus::Sent
            } else {
                DeliveryStatus::Failed
            };
            assert!(db.update_delivery(&row, &next).unwrap());
        }
        assert_eq!(
            db.prune_webhook_log(cut, 1).unwrap(),
            0,
            "the dead one stays"
        );
        assert_eq!(
            db.prune_webhook_log(cut, 1).unwrap(),
            1,
            "then the sent one goes"
        );
        assert_eq!(db.webhook_log(e.id, None, 10).unwrap().len(), 1);
    }
}
