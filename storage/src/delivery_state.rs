//! The deliveries' in-memory state beside the store: row locks (striped by message id; the
//! inboxes' by user), so a conditional change of a row reads and writes it alone, and each
//! channel's count of queued rows, kept as rows change.

use engine::notify::{Channel, Channels};
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// Row locks (striped by message id) and each channel's count of queued rows.
#[derive(Debug)]
pub(crate) struct DeliveryState {
    locks: [Mutex<()>; 64],
    /// Inbox locks, striped by user.
    inbox: [Mutex<()>; 16],
    queued: [AtomicI64; Channel::ALL.len()],
    /// The channels with a worker (`Channels` bits).
    channels: AtomicU8,
    /// Entries kept per in-app inbox.
    inbox_max: AtomicUsize,
    /// Reminder offsets of events that set none.
    reminder_offsets: Mutex<Vec<u32>>,
    /// Per channel: the earliest due time (ms) a queue entry may have, and a count of the
    /// entries staged so far. Queue scans start there instead of at the channel's first key,
    /// so they do not walk the tombstones of everything already sent (an LSM keeps them
    /// until compaction; walking them made every scan as long as the channel's history).
    floors: [Mutex<Floor>; Channel::ALL.len()],
}

/// Where a channel's queue scans start (see `DeliveryState::floors`).
#[derive(Debug)]
struct Floor {
    /// Earliest due time (ms) an entry may have.
    due_ms: u64,
    /// Entries staged so far.
    staged: u64,
    /// When it was last put back to 0: a full scan now and then picks up anything a race
    /// could have left below the floor (a delay, never a loss).
    reset: std::time::Instant,
}

thread_local! {
    /// Queue entries this thread staged and has not reported committed (every store write
    /// stages and commits on one thread).
    static STAGED: std::cell::RefCell<Vec<(Channel, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How often a channel's floor goes back to 0 (one full scan).
const FLOOR_RESET: std::time::Duration = std::time::Duration::from_secs(60);
/// A floor never rises above the scan's start minus this: an entry staged just before a
/// scan may commit (become visible) a little after it.
const FLOOR_MARGIN_MS: u64 = 1_000;

impl Default for DeliveryState {
    fn default() -> Self {
        Self {
            locks: std::array::from_fn(|_| Mutex::new(())),
            inbox: std::array::from_fn(|_| Mutex::new(())),
            queued: std::array::from_fn(|_| AtomicI64::new(0)),
            channels: AtomicU8::new(Channels::default().bits()),
            inbox_max: AtomicUsize::new(200),
            reminder_offsets: Mutex::new(vec![86_400, 3_600]),
            floors: std::array::from_fn(|_| {
                Mutex::new(Floor {
                    due_ms: 0,
                    staged: 0,
                    reset: std::time::Instant::now(),
                })
            }),
        }
    }
}

impl DeliveryState {
    pub(crate) fn lock(&self, message: &Uuid) -> MutexGuard<'_, ()> {
        let stripe = message.as_bytes()[15] as usize % self.locks.len();
        self.locks[stripe].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn inbox_lock(&self, user: &Uuid) -> MutexGuard<'_, ()> {
        let stripe = user.as_bytes()[15] as usize % self.inbox.len();
        self.inbox[stripe].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn channels(&self) -> Channels {
        Channels::from_bits(self.channels.load(Ordering::Relaxed))
    }

    pub(crate) fn set_channels(&self, channels: Channels) {
        self.channels.store(channels.bits(), Ordering::Relaxed);
    }

    pub(crate) fn inbox_max(&self) -> usize {
        self.inbox_max.load(Ordering::Relaxed).max(1)
    }

    pub(crate) fn set_inbox_max(&self, max: usize) {
        self.inbox_max.store(max.max(1), Ordering::Relaxed);
    }

    pub(crate) fn reminder_offsets(&self) -> Vec<u32> {
        self.reminder_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_reminder_offsets(&self, offsets: Vec<u32>) {
        *self
            .reminder_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = offsets;
    }

    fn floor_of(&self, channel: Channel) -> MutexGuard<'_, Floor> {
        self.floors[usize::from(channel.code() - 1)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A queue entry due at `due_ms` is being staged (before its write commits): the floor
    /// goes down to it if needed, and a scan running meanwhile will not raise the floor. The
    /// stage is remembered on this thread until [`Self::committed`].
    pub(crate) fn queued_at(&self, channel: Channel, due_ms: u64) {
        self.lower(channel, due_ms);
        STAGED.with(|staged| staged.borrow_mut().push((channel, due_ms)));
    }

    fn lower(&self, channel: Channel, due_ms: u64) {
        let mut floor = self.floor_of(channel);
        floor.due_ms = floor.due_ms.min(due_ms);
        floor.staged = floor.staged.wrapping_add(1);
    }

    /// The batch that staged this thread's queue entries committed: the floors go down to
    /// them again. A scan that started before the commit could not see them and may have
    /// raised a floor past them meanwhile; one that starts after sees them.
    pub(crate) fn committed(&self) {
        let staged = STAGED.with(|staged| std::mem::take(&mut *staged.borrow_mut()));
        for (channel, due_ms) in staged {
            self.lower(channel, due_ms);
        }
    }

    /// Where a scan starts (due ms), and the stage count to hand back to
    /// [`Self::raise_floor`].
    pub(crate) fn floor(&self, channel: Channel) -> (u64, u64) {
        let mut floor = self.floor_of(channel);
        if floor.reset.elapsed() >= FLOOR_RESET {
            floor.due_ms = 0;
            floor.reset = std::time::Instant::now();
        }
        (floor.due_ms, floor.staged)
    }

    /// After a scan that started (at `started_ms`) from the floor of stage count `seen` and
    /// found no live entry before `first_ms`: the floor rises there (at most to the start
    /// less the margin), unless an entry was staged since (it may be earlier).
    pub(crate) fn raise_floor(&self, channel: Channel, seen: u64, first_ms: u64, started_ms: u64) {
        let mut floor = self.floor_of(channel);
        if floor.staged == seen {
            let cap = started_ms.saturating_sub(FLOOR_MARGIN_MS);
            floor.due_ms = floor.due_ms.max(first_ms.min(cap));
        }
    }

    pub(crate) fn count(&self, channel: Channel, delta: i64) {
        self.queued[usize::from(channel.code() - 1)].fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn queued(&self, channel: Channel) -> usize {
        usize::try_from(self.queued[usize::from(channel.code() - 1)].load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}
