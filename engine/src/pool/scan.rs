//! Check-in scans, decided by the pool that owns the tickets (like seats): exactly one first
//! admission per ticket and check-in list, whatever the order or the number of scanners.
//!
//! - A scan names a check-in list (or the event's default list: every ticket type, any gate,
//!   no re-entry, always open). The list's rules are resolved by the caller from the event
//!   record and travel with the command, so the pool decides from its own state alone.
//! - Online entry: the first admits; later ones are duplicates (reported with the first
//!   admission's time and gate) unless the list allows re-entry and the ticket has exited.
//! - Offline uploads carry their original scan time: the earliest admission wins, whatever the
//!   order uploads arrive in; later scans are recorded as duplicates. Uploaded scans decide the
//!   first admission only (not who is inside now).
//! - A scan with a nonce is applied once: the same nonce again gets the first answer and
//!   changes nothing (scanner retries after a lost reply).
//! - Every decided scan, duplicates included, is journaled (`PoolEvent::Scanned`): nothing a
//!   scanner reported is lost. Refusals by the list's rules are answered, not journaled.

use super::{Admission, PoolEvent, PoolOutcome, PoolState, RegEntry, ScanCommand, millis_to_time};
use crate::error::DomainError;
use crate::ids::{CheckInListId, RegistrationId};
use crate::model::{EventStatus, RegistrationStatus};
pub use crate::values::ListRules;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Scan notices queued per listener before it lags.
pub const SCAN_FEED_CAPACITY: usize = 4096;

/// A decided scan, as the event's scanners hear of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanNotice {
    pub ticket_id: crate::ids::TicketId,
    /// The list (`None`: default).
    pub list: Option<CheckInListId>,
    /// Entry or exit.
    pub direction: Direction,
    /// When and where.
    pub admission: Admission,
    /// How it ended.
    pub result: ScanResult,
    /// An uploaded offline scan.
    pub offline: bool,
}

/// Scan nonces remembered per pool (oldest forgotten first).
pub const NONCES_MAX: usize = 20_000;

/// Entry or exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Coming in.
    Entry,
    /// Going out (only meaningful on lists that allow re-entry).
    Exit,
}

/// How a decided scan ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanResult {
    /// Let in (a first admission, a re-entry, or an offline scan earlier than the one known).
    Admitted,
    /// Let out.
    Exited,
    /// Already admitted: refused, and recorded.
    Duplicate,
}

/// A ticket's state on one list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Seat index of the ticket in its registration.
    pub index: u16,
    /// The list (`None`: default).
    pub list: Option<CheckInListId>,
    /// The first (earliest) admission.
    pub first: Admission,
    /// Inside now (entered and not exited since), as far as online scans tell.
    pub inside: bool,
}

/// Scan nonces already applied, with their answers; bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nonces {
    answers: HashMap<[u8; 16], (ScanResult, Admission)>,
    order: VecDeque<[u8; 16]>,
}

impl Nonces {
    /// The answer given to `nonce`, if it was applied.
    pub fn get(&self, nonce: &[u8; 16]) -> Option<&(ScanResult, Admission)> {
        self.answers.get(nonce)
    }

    /// Remembers the answer to `nonce`, forgetting the oldest beyond `NONCES_MAX`.
    pub fn insert(&mut self, nonce: [u8; 16], answer: (ScanResult, Admission)) {
        if self.answers.insert(nonce, answer).is_none() {
            self.order.push_back(nonce);
            if self.order.len() > NONCES_MAX
                && let Some(old) = self.order.pop_front()
            {
                self.answers.remove(&old);
            }
        }
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// The presence of ticket `index` on `list` among a registration's presences.
pub fn find(presences: &[Presence], index: u16, list: Option<CheckInListId>) -> Option<&Presence> {
    presences
        .iter()
        .find(|p| p.index == index && p.list == list)
}

/// Decides an entry or exit given the ticket's presence on the list. `offline`: an uploaded
/// scan with its original time `at`. `None` for an exit of a ticket never admitted.
pub fn decide(
    presence: Option<&Presence>,
    rules: &ListRules,
    direction: Direction,
    at: DateTime<Utc>,
    gate: Option<&str>,
    offline: bool,
) -> Option<ScanResult> {
    match (direction, presence) {
        (Direction::Exit, None) => None,
        (Direction::Exit, Some(_)) => Some(ScanResult::Exited),
        (Direction::Entry, None) => Some(ScanResult::Admitted),
        // Uploaded scans decide the first admission: the earliest wins (ties: the smaller
        // gate name, so the result never depends on the order uploads arrive in).
        (Direction::Entry, Some(p)) if offline => Some(if earlier(at, gate, &p.first) {
            ScanResult::Admitted
        } else {
            ScanResult::Duplicate
        }),
        (Direction::Entry, Some(p)) if !p.inside && rules.allow_reentry => {
            Some(ScanResult::Admitted)
        }
        (Direction::Entry, Some(_)) => Some(ScanResult::Duplicate),
    }
}

/// Whether a scan at (`at`, `gate`) comes before the admission `first`.
pub fn earlier(at: DateTime<Utc>, gate: Option<&str>, first: &Admission) -> bool {
    (at, gate) < (first.at, first.gate.as_deref())
}

/// Applies a decided scan to a registration's presences. Uploaded offline scans decide the
/// first admission only: a ticket admitted offline counts as inside (so a re-entry list cannot
/// let a second person in on it), and an uploaded exit changes nothing.
pub fn apply(
    presences: &mut Vec<Presence>,
    index: u16,
    list: Option<CheckInListId>,
    result: &ScanResult,
    admission: &Admission,
    offline: bool,
) {
    let existing = presences
        .iter_mut()
        .find(|p| p.index == index && p.list == list);
    match (result, existing) {
        (ScanResult::Admitted, None) => presences.push(Presence {
            index,
            list,
            first: admission.clone(),
            inside: true,
        }),
        (ScanResult::Admitted, Some(p)) => {
            if earlier(admission.at, admission.gate.as_deref(), &p.first) {
                p.first = admission.clone();
            }
            if !offline {
                p.inside = true;
            }
        }
        (ScanResult::Exited, Some(p)) => {
            if !offline {
                p.inside = false;
            }
        }
        (ScanResult::Exited, None) | (ScanResult::Duplicate, _) => {}
    }
}

impl PoolState {
    pub(super) fn decide_scan(
        &mut self,
        cmd: ScanCommand,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        // A retried scan gets its first answer and changes nothing.
        if let Some(nonce) = &cmd.nonce
            && let Some((result, first)) = self.nonces.get(nonce)
        {
            return Ok(PoolOutcome::Scanned {
                result: result.clone(),
                first: first.clone(),
            });
        }
        if event_status != EventStatus::Published {
            return Err(DomainError::EventNotOpen(event_status));
        }
        let reg = self.scanned_registration(&cmd)?;
        let at = scan_time(&cmd, now)?;
        let (registration_id, index, list) = (cmd.registration_id, cmd.ticket_index, cmd.list.id);
        let (event, result) = self.scan_event(cmd, reg, at)?;
        self.emit(events, event);
        let first = self
            .presence
            .get(&registration_id)
            .and_then(|p| find(p, index, list))
            .map(|p| p.first.clone())
            .ok_or(DomainError::NotCheckedIn)?;
        Ok(PoolOutcome::Scanned { result, first })
    }

    /// The registration of the scanned ticket, if the ticket exists and may be checked in.
    fn scanned_registration(&self, cmd: &ScanCommand) -> Result<RegEntry, DomainError> {
        let reg = *self
            .regs
            .get(&cmd.registration_id)
            .ok_or(DomainError::TicketNotFound)?;
        match reg.status {
            RegistrationStatus::Confirmed => {}
            RegistrationStatus::Canceled => return Err(DomainError::TicketRevoked),
            status => {
                return Err(DomainError::InvalidRegistrationState {
                    status,
                    action: "check in",
                });
            }
        }
        if cmd.ticket_index >= reg.quantity {
            return Err(DomainError::TicketNotFound);
        }
        Ok(reg)
    }

    /// Decides the scan against the ticket's presences and builds its event (the result, the
    /// admission it supersedes, whether it is the ticket's first on any list) and its result.
    fn scan_event(
        &self,
        cmd: ScanCommand,
        reg: RegEntry,
        at: DateTime<Utc>,
    ) -> Result<(PoolEvent, ScanResult), DomainError> {
        let offline = cmd.scanned_at.is_some();
        let rules = &cmd.list;
        let presences = self.presence.get(&cmd.registration_id);
        let presence = presences.and_then(|p| find(p, cmd.ticket_index, rules.id));
        let result = decide(
            presence,
            rules,
            cmd.direction,
            at,
            cmd.gate.as_deref(),
            offline,
        )
        .ok_or(DomainError::NotCheckedIn)?;
        // An uploaded scan that takes over the first admission: the one it replaces (for the
        // statistics, which count a ticket's first admission once).
        let superseded = match (&result, presence) {
            (ScanResult::Admitted, Some(p)) if offline => Some(p.first.clone()),
            _ => None,
        };
        let first_on_ticket = result == ScanResult::Admitted
            && presences.is_none_or(|p| {
                p.iter()
                    .filter(|p| p.index == cmd.ticket_index)
                    .all(|p| earlier(at, cmd.gate.as_deref(), &p.first))
            });
        let event = PoolEvent::Scanned {
            registration_id: cmd.registration_id,
            user_id: reg.user(),
            ticket_id: cmd.ticket_id,
            ticket_index: cmd.ticket_index,
            list: rules.id,
            direction: cmd.direction,
            admission: Admission { at, gate: cmd.gate },
            offline,
            nonce: cmd.nonce,
            result: result.clone(),
            superseded,
            first_on_ticket: Some(first_on_ticket),
        };
        Ok((event, result))
    }

    pub(super) fn apply_scanned(&mut self, event: &PoolEvent) {
        let PoolEvent::Scanned {
            registration_id,
            ticket_index,
            list,
            admission,
            offline,
            nonce,
            result,
            ..
        } = event
        else {
            unreachable!("apply_scanned of {event:?}");
        };
        let presences = self.presence.entry(*registration_id).or_default();
        apply(presences, *ticket_index, *list, result, admission, *offline);
        if let Some(nonce) = nonce {
            let first = find(presences, *ticket_index, *list)
                .map_or_else(|| admission.clone(), |p| p.first.clone());
            self.nonces.insert(*nonce, (result.clone(), first));
        }
    }

    /// A default-list admission from a journal written before check-in lists.
    pub(super) fn apply_checked_in(
        &mut self,
        registration_id: RegistrationId,
        ticket_index: u16,
        admission: &Admission,
    ) {
        apply(
            self.presence.entry(registration_id).or_default(),
            ticket_index,
            None,
            &ScanResult::Admitted,
            admission,
            false,
        );
    }
}

/// When the scan counts as made (an uploaded scan: when it was made, at most now), if the
/// list's gates, ticket types and opening hours admit it.
fn scan_time(cmd: &ScanCommand, now: DateTime<Utc>) -> Result<DateTime<Utc>, DomainError> {
    let rules = &cmd.list;
    let gate_ok =
        rules.gates.is_empty() || cmd.gate.as_ref().is_some_and(|g| rules.gates.contains(g));
    let type_ok = rules.ticket_types.is_empty() || rules.ticket_types.contains(&cmd.ticket_type_id);
    if !gate_ok || !type_ok {
        return Err(DomainError::NotAllowedAtGate);
    }
    let at = millis_to_time(cmd.scanned_at.unwrap_or(now).min(now).timestamp_millis());
    if let Some(opens_at) = rules.opens_at
        && at < opens_at
    {
        return Err(DomainError::NotYetValid { opens_at });
    }
    if let Some(closes_at) = rules.closes_at
        && at > closes_at
    {
        return Err(DomainError::CheckInClosed { closes_at });
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn admission(ms: i64, gate: &str) -> Admission {
        Admission {
            at: DateTime::from_timestamp_millis(ms).unwrap(),
            gate: Some(gate.into()),
        }
    }

    /// Applies offline entry scans one by one, as uploads would; returns the presences and
    /// how many scans were duplicates.
    fn upload(scans: &[(i64, &str)]) -> (Vec<Presence>, usize) {
        let rules = ListRules::default_list();
        let mut presences = Vec::new();
        let mut duplicates = 0;
        for (ms, gate) in scans {
            let a = admission(*ms, gate);
            let result = decide(
                find(&presences, 0, None),
                &rules,
                Direction::Entry,
                a.at,
                a.gate.as_deref(),
                true,
            )
            .unwrap();
            if result == ScanResult::Duplicate {
                duplicates += 1;
            }
            apply(&mut presences, 0, None, &result, &a, true);
        }
        (presences, duplicates)
    }

    proptest! {
        /// Two scanners' offline scans of one ticket, uploaded in any order: the same final
        /// state, the earliest scan is the admission, and all but one scan count as
        /// duplicates or superseded admissions (exactly one admission stands).
        #[test]
        fn offline_merges_are_order_independent(
            times in proptest::collection::vec(0i64..20, 1..12),
            seed in any::<u64>(),
        ) {
            let scans: Vec<(i64, &str)> = times
                .iter()
                .enumerate()
                .map(|(i, t)| (*t, if i % 2 == 0 { "north" } else { "south" }))
                .collect();
            let mut shuffled = scans.clone();
            // A deterministic shuffle from the seed.
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let (a, _) = upload(&scans);
            let (b, _) = upload(&shuffled);
            prop_assert_eq!(a.len(), 1);
            prop_assert_eq!(&a[0].first, &b[0].first);
            let earliest = *times.iter().min().unwrap();
            prop_assert_eq!(a[0].first.at.timestamp_millis(), earliest);
        }
    }

    #[test]
    fn reentry_only_after_an_exit_and_only_where_allowed() {
        let mut rules = ListRules::default_list();
        let mut presences = Vec::new();
        let a = admission(1_000, "north");
        let r = decide(None, &rules, Direction::Entry, a.at, None, false).unwrap();
        apply(&mut presences, 0, None, &r, &a, false);
        let again = decide(
            find(&presences, 0, None),
            &rules,
            Direction::Entry,
            a.at,
            None,
            false,
        );
        assert_eq!(again, Some(ScanResult::Duplicate));
        assert_eq!(
            decide(None, &rules, Direction::Exit, a.at, None, false),
            None
        );
        let out = decide(
            find(&presences, 0, None),
            &rules,
            Direction::Exit,
            a.at,
            None,
            false,
        )
        .unwrap();
        apply(&mut presences, 0, None, &out, &a, false);
        // Without re-entry: still a duplicate; with it: admitted again, first admission kept.
        let later = admission(2_000, "south");
        let no = decide(
            find(&presences, 0, None),
            &rules,
            Direction::Entry,
            later.at,
            None,
            false,
        );
        assert_eq!(no, Some(ScanResult::Duplicate));
        rules.allow_reentry = true;
        let yes = decide(
            find(&presences, 0, None),
            &rules,
            Direction::Entry,
            later.at,
            None,
            false,
        )
        .unwrap();
        assert_eq!(yes, ScanResult::Admitted);
        apply(&mut presences, 0, None, &yes, &later, false);
        assert_eq!(presences[0].first, a);
        assert!(presences[0].inside);
    }

    #[test]
    fn nonces_are_bounded() {
        let mut n = Nonces::default();
        for i in 0..(NONCES_MAX + 10) {
            let mut nonce = [0u8; 16];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            n.insert(nonce, (ScanResult::Admitted, admission(0, "g")));
        }
        assert_eq!(n.len(), NONCES_MAX);
        assert!(n.get(&[0u8; 16]).is_none(), "the oldest went first");
    }
}
