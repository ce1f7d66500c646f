//! The in-app inboxes (`inbox`): user (16) + message id (16) → entry. Message ids are
//! UUIDv7, so an inbox is a prefix in creation order: newest first is a reverse scan. An
//! inbox's changes (add with pruning, mark read) read and write under the inbox's lock
//! (striped by user), so a repeated delivery cannot reset a read entry and two markings
//! cannot count one entry twice.
//!
//! Each inbox keeps its newest `inbox_max` entries: an add removes the oldest one beyond it.
//! Every scan stops after `inbox_max` live entries, so the removed entries' tombstones, which
//! sort before them, are never walked over (a busy inbox would otherwise collect thousands
//! until compaction drops them).

use crate::codec::{decode, encode};
use crate::error::err;
use crate::store::Db;
use chrono::{DateTime, Utc};
use engine::ids::UserId;
use engine::notify::inbox::{Inbox, InboxEntry, Marking};
use engine::ports::StoreError;
use uuid::Uuid;

fn key(user: UserId, id: &Uuid) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(user.0.as_bytes());
    key[16..].copy_from_slice(id.as_bytes());
    key
}

impl Db {
    /// `user`'s entries, newest first, older than `before` if given.
    fn inbox_scan(
        &self,
        user: UserId,
        before: Option<Uuid>,
    ) -> impl Iterator<Item = Result<InboxEntry, StoreError>> + '_ {
        let start = key(user, &Uuid::nil());
        let end = match before {
            // Exclusive of `before` itself.
            Some(id) => key(user, &id),
            None => key(user, &Uuid::max()),
        };
        let inclusive = before.is_none();
        let range: Box<dyn DoubleEndedIterator<Item = fjall::Guard>> = if inclusive {
            Box::new(self.inbox.range(start..=end))
        } else {
            Box::new(self.inbox.range(start..end))
        };
        range
            .rev()
            .take(self.delivery_state.inbox_max())
            .map(|guard| {
                let (_, value) = guard.into_inner().map_err(err)?;
                decode::<InboxEntry>(&value).map_err(StoreError::from)
            })
    }
}

impl Inbox for Db {
    fn inbox_add(&self, entry: &InboxEntry) -> Result<bool, StoreError> {
        let _inbox = self.delivery_state.inbox_lock(&entry.user_id.0);
        let k = key(entry.user_id, &entry.id);
        if self.inbox.get(k).map_err(err)?.is_some() {
            return Ok(false);
        }
        let mut batch = self.db.batch();
        batch.insert(&self.inbox, k.to_vec(), encode(entry).map_err(err)?);
        // The oldest beyond the bound (counting the new one) goes with the write: the entry
        // after the newest `keep - 1` stored ones, if any (one at most: every add keeps the
        // bound). Stopping there never walks the tombstones of earlier removals.
        let keep = self.delivery_state.inbox_max();
        let start = key(entry.user_id, &Uuid::nil());
        let end = key(entry.user_id, &Uuid::max());
        let beyond = self.inbox.range(start..=end).rev().nth(keep - 1);
        if let Some(guard) = beyond {
            let oldest = guard.key().map_err(err)?;
            if k[..] < oldest[..] {
                // Older than every entry kept (a late repeat of a pruned message): the inbox
                // keeps its newest, so this one is not written.
                return Ok(false);
            }
            batch.remove(&self.inbox, oldest.to_vec());
        }
        batch.commit().map_err(err)?;
        Ok(true)
    }

    fn inbox_page(
        &self,
        user: UserId,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        self.inbox_scan(user, before).take(limit).collect()
    }

    fn inbox_entry(&self, user: UserId, id: Uuid) -> Result<Option<InboxEntry>, StoreError> {
        match self.inbox.get(key(user, &id)).map_err(err)? {
            Some(bytes) => Ok(Some(decode(&bytes).map_err(err)?)),
            None => Ok(None),
        }
    }

    fn inbox_unread(&self, user: UserId) -> Result<usize, StoreError> {
        let mut unread = 0;
        for entry in self.inbox_scan(user, None) {
            if entry?.read_at.is_none() {
                unread += 1;
            }
        }
        Ok(unread)
    }

    fn inbox_mark_read(
        &self,
        user: UserId,
        which: Marking,
        at: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let _inbox = self.delivery_state.inbox_lock(&user.0);
        let entries = match which {
            Marking::One(id) => self.inbox_entry(user, id)?.into_iter().collect(),
            Marking::All => self.inbox_scan(user, None).collect::<Result<Vec<_>, _>>()?,
        };
        let mut batch = self.db.batch();
        let mut marked = 0;
        for mut entry in entries.into_iter().filter(|e| e.read_at.is_none()) {
            entry.read_at = Some(at);
            batch.insert(
                &self.inbox,
                key(user, &entry.id).to_vec(),
                encode(&entry).map_err(err)?,
            );
            marked += 1;
        }
        if marked > 0 {
            batch.commit().map_err(err)?;
        }
        Ok(marked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DbOptions;

    fn entry(user: UserId, at: DateTime<Utc>) -> InboxEntry {
        let millis = u64::try_from(at.timestamp_millis()).unwrap();
        InboxEntry {
            id: uuid::Builder::from_unix_timestamp_millis(millis, &rand_bytes()).into_uuid(),
            user_id: user,
            kind: "confirmed".into(),
            title: "Confirmed".into(),
            body: "Your tickets".into(),
            link: None,
            created_at: at,
            read_at: None,
        }
    }

    fn rand_bytes() -> [u8; 10] {
        *uuid::Uuid::new_v4().as_bytes().first_chunk().unwrap()
    }

    #[test]
    fn an_inbox_pages_newest_first_keeps_its_newest_and_counts_unread() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
        let (ann, bob) = (UserId::new(), UserId::new());
        let t0 = Utc::now();
        let entries: Vec<InboxEntry> = (0..5)
            .map(|i| entry(ann, t0 + chrono::Duration::seconds(i)))
            .collect();
        db.set_inbox_max(4);
        for e in &entries {
            assert!(db.inbox_add(e).unwrap());
        }
        assert!(db.inbox_add(&entry(bob, t0)).unwrap());
        // The oldest went; newest first.
        let page = db.inbox_page(ann, None, 10).unwrap();
        let ids: Vec<Uuid> = page.iter().map(|e| e.id).collect();
        let newest: Vec<Uuid> = entries.iter().rev().take(4).map(|e| e.id).collect();
        assert_eq!(ids, newest);
        // A late repeat of a message older than all kept ones is not written back.
        let late = entry(ann, t0 - chrono::Duration::seconds(1));
        assert!(!db.inbox_add(&late).unwrap());
        assert!(!db.inbox_add(&entries[0]).unwrap(), "pruned before");
        let again: Vec<Uuid> = db
            .inbox_page(ann, None, 10)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(again, ids);
        let next = db.inbox_page(ann, Some(ids[1]), 10).unwrap();
        assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), ids[2..]);
        assert_eq!(db.inbox_unread(ann).unwrap(), 4);

        // Read once; a repeated delivery does not make it unread again.
        let at = Utc::now();
        assert_eq!(
            db.inbox_mark_read(ann, Marking::One(ids[0]), at).unwrap(),
            1
        );
        assert_eq!(
            db.inbox_mark_read(ann, Marking::One(ids[0]), at).unwrap(),
            0
        );
        assert!(!db.inbox_add(&entries[4]).unwrap());
        assert!(
            db.inbox_entry(ann, ids[0])
                .unwrap()
                .unwrap()
                .read_at
                .is_some()
        );
        assert_eq!(db.inbox_unread(ann).unwrap(), 3);
        assert_eq!(db.inbox_mark_read(ann, Marking::All, at).unwrap(), 3);
        assert_eq!(db.inbox_unread(ann).unwrap(), 0);
        assert_eq!(
            db.inbox_unread(bob).unwrap(),
            1,
            "another inbox is untouched"
        );
    }
}
