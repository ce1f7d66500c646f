//! Pages of registrations named by an index (by event, e-mail or account), in id order.

use crate::error::err;
use crate::keys;
use crate::store::{Db, SCAN_KEYS_MAX};
use engine::ids::RegistrationId;
use engine::model::RegistrationStatus;
use engine::ports::{Page, RegistrationView, Store, StoreError};
use fjall::Keyspace;

impl Db {
    /// Registrations named by an index prefix scan, starting after `after`.
    pub(crate) fn registrations_in(
        &self,
        index: &Keyspace,
        prefix: &[u8],
        after: Option<RegistrationId>,
        status: Option<RegistrationStatus>,
        limit: usize,
    ) -> Result<Page<RegistrationView, RegistrationId>, StoreError> {
        let mut start = prefix.to_vec();
        match after {
            Some(id) => {
                start.extend_from_slice(id.as_bytes());
                start.push(0); // strictly after the cursor
            }
            None => start.extend_from_slice(&[0u8; 16]),
        }
        let mut end = prefix.to_vec();
        end.extend_from_slice(&[0xffu8; 17]);
        let mut items: Vec<RegistrationView> = Vec::new();
        let mut last_scanned = None;
        for (scanned, guard) in index.range(start..end).enumerate() {
            if scanned == SCAN_KEYS_MAX {
                return Ok(Page {
                    items,
                    next: last_scanned,
                });
            }
            let key = guard.key().map_err(err)?;
            let Some(id) = keys::trailing_id(&key).map(RegistrationId) else {
                continue;
            };
            if let Some(view) = self.registration(id)?
                && status.is_none_or(|s| s == view.status)
            {
                if items.len() == limit {
                    let next = items.last().map(|v| v.id);
                    return Ok(Page { items, next });
                }
                items.push(view);
            }
            last_scanned = Some(id);
        }
        Ok(Page { items, next: None })
    }
}
