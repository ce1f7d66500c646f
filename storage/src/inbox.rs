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
//!
//! An add reads no entries: `inbox_meta` (user (16) → count (4) + oldest id (16)), written
//! in the add's batch, says whether the inbox is full and which entry is its oldest; pruning
//! reads forward from there (only live entries: nothing above the oldest was ever removed).
//! Walking back from the newest to find the oldest cost a skip-list search per step, which
//! was a quarter of the gateway's CPU per mail while a backlog drained. An inbox written
//! before the meta existed gets it from one bounded scan.

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

/// An inbox's size and oldest entry (`oldest` is meaningless while `count` is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    count: u32,
    oldest: Uuid,
}

impl Meta {
    fn encode(self) -> [u8; 20] {
        let mut bytes = [0u8; 20];
        bytes[..4].copy_from_slice(&self.count.to_be_bytes());
        bytes[4..].copy_from_slice(self.oldest.as_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let (count, oldest) = bytes
            .split_first_chunk::<4>()
            .filter(|(_, oldest)| oldest.len() == 16)
            .ok_or_else(|| err(crate::codec::CodecError::Key("inbox_meta")))?;
        Ok(Self {
            count: u32::from_be_bytes(*count),
            oldest: Uuid::from_slice(oldest).map_err(err)?,
        })
    }
}

impl Db {
    /// `user`'s inbox meta; for an inbox written before there was any, counted once (a scan
    /// bounded like every other).
    fn inbox_meta(&self, user: UserId) -> Result<Meta, StoreError> {
        if let Some(bytes) = self.inbox_meta.get(user.0.as_bytes()).map_err(err)? {
            return Meta::decode(&bytes);
        }
        let mut meta = Meta {
            count: 0,
            oldest: Uuid::nil(),
        };
        for entry in self.inbox_scan(user, None) {
            meta.count += 1;
            meta.oldest = entry?.id;
        }
        Ok(meta)
    }

    /// The ids of `user`'s stored entries from `from` on, oldest first, `n` at most.
    fn inbox_oldest(&self, user: UserId, from: Uuid, n: usize) -> Result<Vec<Uuid>, StoreError> {
        self.inbox
            .range(key(user, &from)..=key(user, &Uuid::max()))
            .take(n)
            .map(|guard| {
                let k = guard.key().map_err(err)?;
                Uuid::from_slice(&k[16..]).map_err(err)
            })
            .collect()
    }
}

impl Inbox for Db {
    fn inbox_add(&self, entry: &InboxEntry) -> Result<bool, StoreError> {
        let user = entry.user_id;
        let _inbox = self.delivery_state.inbox_lock(&user.0);
        let k = key(user, &entry.id);
        if self.inbox.get(k).map_err(err)?.is_some() {
            return Ok(false);
        }
        let keep = u32::try_from(self.delivery_state.inbox_max()).unwrap_or(u32::MAX);
        let meta = self.inbox_meta(user)?;
        if meta.count >= keep && entry.id < meta.oldest {
            // Older than every entry kept (a late repeat of a pruned message): the inbox
            // keeps its newest, so this one is not written.
            return Ok(false);
        }
        // The oldest beyond the bound (counting the new one) go with the write: one at most
        // unless the bound was lowered since. They are the smallest of the stored entries
        // (read forward from the oldest) and the new one.
        let excess = (meta.count + 1).saturating_sub(keep) as usize;
        let mut ids = if meta.count == 0 {
            Vec::new()
        } else {
            self.inbox_oldest(user, meta.oldest, excess + 1)?
        };
        let at = ids.partition_point(|id| *id < entry.id);
        ids.insert(at, entry.id);
        debug_assert!(
            ids.len() > excess,
            "the meta counts entries that are not there"
        );
        let excess = excess.min(ids.len() - 1);
        let mut batch = self.db.batch();
        let written = at >= excess;
        if written {
            batch.insert(&self.inbox, k.to_vec(), encode(entry).map_err(err)?);
        }
        for id in &ids[..excess] {
            if *id != entry.id {
                batch.remove(&self.inbox, key(user, id).to_vec());
            }
        }
        let next = Meta {
            count: meta.count + 1 - excess as u32,
            oldest: ids.get(excess).copied().unwrap_or(entry.id),
        };
        batch.insert(&self.inbox_meta, user.0.as_bytes().to_vec(), next.encode());
        batch.commit().map_err(err)?;
        Ok(written)
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

    /// Adds in any order (late, repeated), with the bound raised and lowered and an inbox
    /// written before the meta existed, keep what a sorted set of the newest would.
    #[test]
    fn an_inbox_keeps_its_newest_whatever_the_order_of_adds() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
        let user = UserId::new();
        let t0 = Utc::now();
        let mut model = std::collections::BTreeSet::new();
        let mut seen: Vec<InboxEntry> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..600 {
            let keep = match step {
                0..200 => 5,
                200..350 => 9,
                350..500 => 3,
                _ => 6,
            };
            db.set_inbox_max(keep);
            if step == 300 {
                // As a store written before the meta: rebuilt from a scan.
                db.inbox_meta.remove(user.0.as_bytes()).unwrap();
            }
            let entry = match next(4) {
                0 if !seen.is_empty() => seen[next(seen.len() as u64) as usize].clone(),
                _ => entry(
                    user,
                    t0 + chrono::Duration::milliseconds(next(10_000) as i64),
                ),
            };
            seen.push(entry.clone());
            let expected = if model.contains(&entry.id)
                || (model.len() >= keep && model.first().is_some_and(|first| entry.id < *first))
            {
                false
            } else {
                model.insert(entry.id);
                while model.len() > keep {
                    model.pop_first();
                }
                model.contains(&entry.id)
            };
            assert_eq!(db.inbox_add(&entry).unwrap(), expected, "step {step}");
            let page: Vec<Uuid> = db
                .inbox_page(user, None, 100)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect();
            let newest: Vec<Uuid> = model.iter().rev().take(keep).copied().collect();
            assert_eq!(page, newest, "step {step}");
        }
    }
}
