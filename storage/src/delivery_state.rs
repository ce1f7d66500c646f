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
}

impl Default for DeliveryState {
    fn default() -> Self {
        Self {
            locks: std::array::from_fn(|_| Mutex::new(())),
            inbox: std::array::from_fn(|_| Mutex::new(())),
            queued: std::array::from_fn(|_| AtomicI64::new(0)),
            channels: AtomicU8::new(Channels::default().bits()),
            inbox_max: AtomicUsize::new(200),
            reminder_offsets: Mutex::new(vec![86_400, 3_600]),
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

    pub(crate) fn count(&self, channel: Channel, delta: i64) {
        self.queued[usize::from(channel.code() - 1)].fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn queued(&self, channel: Channel) -> usize {
        usize::try_from(self.queued[usize::from(channel.code() - 1)].load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}
