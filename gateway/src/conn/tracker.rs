//! The table of open connections: admission (a total bound and a per-address bound), what
//! each connection is doing (waiting for a request, serving requests, upgraded to a
//! WebSocket), and eviction of the connection that has waited longest when the table is full.
//!
//! Why evict instead of refusing: a client that opens connections and never completes a
//! request (slowloris) fills any bound; refusing new connections at the bound would then
//! refuse the health check and every honest client until the attacker's connections time
//! out. A full table instead closes a connection that has no request in flight (the one idle
//! the longest among a bounded sample), so a new client — a health check, a buyer — always
//! gets in while connections serving requests or WebSockets are never cut.

use futures::task::AtomicWaker;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Slots looked at per eviction: enough to find a waiting connection among attackers and
/// honest idle ones, small enough that an accept at the bound stays cheap.
const EVICTION_SCAN_MAX: usize = 256;

/// Longest an admission waits for an evicted connection to close when the room for closing
/// connections is all taken (a flood of new connections evicting faster than they close).
const CLOSING_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already has `connections_per_ip_max` open.
    PerAddress,
    /// The table is full of connections serving requests or WebSockets.
    Full,
}

impl Refusal {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::PerAddress => "per_address",
            Refusal::Full => "full",
        }
    }
}

/// One connection's state, shared by its I/O wrapper, its request wrapper and the evictor.
#[derive(Default)]
pub struct Slot {
    /// The slot holds a live connection.
    occupied: AtomicBool,
    /// Requests in flight (HTTP/2 may have several); a response counts until its body ended.
    busy: AtomicU32,
    /// Upgraded to a WebSocket: hyper no longer reads requests from it, and it is never
    /// evicted or timed out here (the hub has its own lag timeout).
    upgraded: AtomicBool,
    /// Chosen for eviction (set once, by compare-and-swap, so one eviction per connection).
    evicting: AtomicBool,
    /// Speaks HTTP/2: bytes between requests are frames (pings, window updates, settings),
    /// not the start of a request head, so they do not start the header deadline.
    http2: AtomicBool,
    /// Milliseconds since the tracker's epoch when the connection last started waiting for a
    /// request: accepted, or its last response ended.
    idle_since_ms: AtomicU64,
    /// Milliseconds since the epoch when the first byte of the next request arrived while
    /// waiting (0: none yet): from then on the header deadline applies.
    head_started_ms: AtomicU64,
    /// Wakes the connection's task to close it.
    evict: Notify,
    /// The read side, parked with no deadline while a request was in flight: woken when the
    /// last request ends so that the keep-alive deadline is armed (hyper may poll for the
    /// next request before the response body was dropped).
    reader: AtomicWaker,
    /// The peer's address (for the per-address count), valid while occupied.
    ip: Mutex<Option<IpAddr>>,
}

/// What a waiting connection is waiting for, and since when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// No byte of a next request yet (accepted, or between keep-alive requests).
    Idle { since_ms: u64 },
    /// Part of a request head arrived at `since_ms`; the rest has not.
    Head { since_ms: u64 },
}

impl Slot {
    /// `None` while requests are in flight or the connection is upgraded: no read deadline.
    pub fn waiting(&self) -> Option<Waiting> {
        if self.upgraded.load(Ordering::Acquire) || self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_started_ms.load(Ordering::Acquire) {
            0 => Some(Waiting::Idle {
                since_ms: self.idle_since_ms.load(Ordering::Acquire),
            }),
            since_ms => Some(Waiting::Head { since_ms }),
        }
    }

    /// Bytes arrived: if the connection was waiting with no byte of a request yet, the
    /// header deadline starts now (`now_ms` is read only then).
    pub fn bytes_arrived(&self, now_ms: impl FnOnce() -> u64) {
        if self.busy.load(Ordering::Relaxed) == 0
            && !self.http2.load(Ordering::Relaxed)
            && !self.upgraded.load(Ordering::Relaxed)
            && self.head_started_ms.load(Ordering::Relaxed) == 0
        {
            self.head_started_ms
                .store(now_ms().max(1), Ordering::Release);
        }
    }

    /// A request's head was read and is being served.
    pub fn request_started(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(0, Ordering::Release);
    }

    /// A response (head and body) was handed over completely, or abandoned.
    pub fn request_ended(&self, now_ms: u64) {
        self.idle_since_ms.store(now_ms, Ordering::Release);
        if self.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.reader.wake();
        }
    }

    /// The read side found nothing while no deadline applies: wake `waker` when one may
    /// (the last request in flight ended).
    pub fn park_reader(&self, waker: &std::task::Waker) {
        self.reader.register(waker);
    }

    /// The connection opened with the HTTP/2 preface.
    pub fn speaks_http2(&self) {
        self.http2.store(true, Ordering::Release);
    }

    /// The connection became a WebSocket.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    /// Resolves when the connection is chosen for eviction.
    pub fn evicted(&self) -> tokio::sync::futures::Notified<'_> {
        self.evict.notified()
    }

    /// Whether requests are in flight.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    /// Whether the evictor chose this connection.
    pub fn is_evicting(&self) -> bool {
        self.evicting.load(Ordering::Acquire)
    }
}

/// Admission bounds.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Connections open at once (eviction keeps the table at this size; a few more may be
    /// closing).
    pub connections_max: usize,
    /// Connections from one address at once (0: no per-address bound).
    pub connections_per_ip_max: usize,
}

/// The table.
pub struct Tracker {
    bounds: Bounds,
    slots: Box<[Slot]>,
    free: Mutex<Vec<usize>>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    open: AtomicUsize,
    /// Where the next eviction scan starts (a clock hand over the slots).
    hand: AtomicUsize,
    /// A place was freed (admission may be waiting for an evicted connection to close).
    released: Notify,
    epoch: Instant,
}

/// A connection's place in the table; dropping it frees the place.
pub struct SlotGuard {
    tracker: Arc<Tracker>,
    index: usize,
}

impl SlotGuard {
    /// The connection's state.
    pub fn slot(&self) -> &Slot {
        &self.tracker.slots[self.index]
    }

    /// Milliseconds since the tracker's epoch.
    pub fn now_ms(&self) -> u64 {
        self.tracker.now_ms()
    }

    /// The instant `ms` after the epoch.
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.tracker.epoch + std::time::Duration::from_millis(ms)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.tracker.release(self.index);
    }
}

impl Tracker {
    /// A table for `bounds`: `connections_max` places plus room for the connections being
    /// closed by eviction (at most one per admission until they close).
    pub fn new(bounds: Bounds) -> Arc<Self> {
        let closing_room = bounds.connections_max / 16 + 16;
        let slots: Box<[Slot]> = (0..bounds.connections_max + closing_room)
            .map(|_| Slot::default())
            .collect();
        let free = (0..slots.len()).rev().collect();
        Arc::new(Self {
            bounds,
            slots,
            free: Mutex::new(free),
            per_ip: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            hand: AtomicUsize::new(0),
            released: Notify::new(),
            epoch: Instant::now(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn now_ms(&self) -> u64 {
        // +1: 0 means "not set" in the slot's time fields.
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Admits a connection from `ip`: `Ok` with its place and whether a waiting connection
    /// was evicted to make room, or why not. When the evicted connections have not closed
    /// yet and their room is all taken, waits up to [`CLOSING_WAIT`] for one to close (the
    /// accept loop pauses; the kernel's backlog holds new connections meanwhile).
    pub async fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<(SlotGuard, bool), Refusal> {
        if !self.count_address(ip) {
            return Err(Refusal::PerAddress);
        }
        let mut evicted = false;
        if self.open() >= self.bounds.connections_max {
            evicted = self.evict_one();
            if !evicted {
                self.uncount_address(ip);
                return Err(Refusal::Full);
            }
        }
        let deadline = Instant::now() + CLOSING_WAIT;
        let index = loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(index) = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                break index;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                self.uncount_address(ip);
                return Err(Refusal::Full);
            }
        };
        let slot = &self.slots[index];
        *slot.ip.lock().unwrap_or_else(|e| e.into_inner()) = Some(ip);
        slot.busy.store(0, Ordering::Relaxed);
        slot.upgraded.store(false, Ordering::Relaxed);
        slot.evicting.store(false, Ordering::Relaxed);
        slot.http2.store(false, Ordering::Relaxed);
        slot.head_started_ms.store(0, Ordering::Relaxed);
        slot.idle_since_ms.store(self.now_ms(), Ordering::Relaxed);
        slot.occupied.store(true, Ordering::Release);
        self.open.fetch_add(1, Ordering::AcqRel);
        Ok((
            SlotGuard {
                tracker: self.clone(),
                index,
            },
            evicted,
        ))
    }

    /// Counts a connection of `ip` (always: eviction uses the counts), unless that would
    /// pass the per-address bound.
    fn count_address(&self, ip: IpAddr) -> bool {
        let bound = self.bounds.connections_per_ip_max;
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_ip.entry(ip).or_insert(0);
        if bound != 0 && *count >= bound {
            return false;
        }
        *count += 1;
        true
    }

    fn uncount_address(&self, ip: IpAddr) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    /// Chooses, among the next `EVICTION_SCAN_MAX` places, a connection with no request in
    /// flight and not upgraded — of the address holding the most connections, the one that
    /// has waited longest — and wakes its task to close it; `false` if none.
    ///
    /// The address comes first so that one client filling the table (a slowloris from one
    /// host) loses its own connections, not the health checker's or a buyer's that has just
    /// connected and not yet sent its request; among equals, age decides.
    fn evict_one(&self) -> bool {
        let len = self.slots.len();
        let start = self.hand.fetch_add(EVICTION_SCAN_MAX, Ordering::Relaxed) % len;
        let per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        // (index, connections of its address, waiting since)
        let mut oldest: Option<(usize, usize, u64)> = None;
        for offset in 0..EVICTION_SCAN_MAX.min(len) {
            let index = (start + offset) % len;
            let slot = &self.slots[index];
            if !slot.occupied.load(Ordering::Acquire) || slot.is_evicting() {
                continue;
            }
            let since = match slot.waiting() {
                Some(Waiting::Idle { since_ms }) => since_ms,
                // A partial head counts from when the connection started waiting.
                Some(Waiting::Head { .. }) => slot.idle_since_ms.load(Ordering::Acquire),
                None => continue,
            };
            let ip = *slot.ip.lock().unwrap_or_else(|e| e.into_inner());
            let share = ip.and_then(|ip| per_ip.get(&ip).copied()).unwrap_or(0);
            if oldest.is_none_or(|(_, s, t)| share > s || share == s && since < t) {
                oldest = Some((index, share, since));
            }
        }
        drop(per_ip);
        let Some((index, _, _)) = oldest else {
            return false;
        };
        let slot = &self.slots[index];
        if slot
            .evicting
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        slot.evict.notify_waiters();
        true
    }

    fn release(&self, index: usize) {
        let slot = &self.slots[index];
        slot.occupied.store(false, Ordering::Release);
        let ip = slot.ip.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(ip) = ip {
            self.uncount_address(ip);
        }
        let open = self.open.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("regengine_http_connections_open").set(open as f64);
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(index);
        self.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[tokio::test]
    async fn per_address_bound_refuses_and_frees_on_drop() {
        let tracker = Tracker::new(Bounds {
            connections_max: 10,
            connections_per_ip_max: 2,
        });
        let a = tracker.admit(ip(1)).await.unwrap();
        let _b = tracker.admit(ip(1)).await.unwrap();
        assert_eq!(tracker.admit(ip(1)).await.err(), Some(Refusal::PerAddress));
        assert!(tracker.admit(ip(2)).await.is_ok());
        drop(a);
        assert!(tracker.admit(ip(1)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn full_table_evicts_the_longest_waiting_and_never_a_busy_one() {
        let tracker = Tracker::new(Bounds {
            connections_max: 3,
            connections_per_ip_max: 0,
        });
        let (busy, _) = tracker.admit(ip(1)).await.unwrap();
        busy.slot().request_started();
        let (ws, _) = tracker.admit(ip(2)).await.unwrap();
        ws.slot().upgraded();
        tokio::time::advance(std::time::Duration::from_millis(5)).await;
        let (waiting, _) = tracker.admit(ip(3)).await.unwrap();
        let notified = waiting.slot().evicted();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (_new, evicted) = tracker.admit(ip(4)).await.unwrap();
        assert!(evicted);
        assert!(waiting.slot().is_evicting());
        assert!(!busy.slot().is_evicting() && !ws.slot().is_evicting());
        notified.await;
        // The newcomer starts a request: nothing is left to evict (busy, upgraded, closing).
        _new.slot().request_started();
        assert_eq!(tracker.admit(ip(5)).await.err(), Some(Refusal::Full));
        // Its response ends: it is waiting again, and goes next.
        _new.slot().request_ended(tracker.now_ms());
        assert!(tracker.admit(ip(5)).await.unwrap().1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_address_holding_most_connections_loses_one_first() {
        let tracker = Tracker::new(Bounds {
            connections_max: 4,
            connections_per_ip_max: 0,
        });
        // The newcomer from a quiet address waited least but is alone; the flooding
        // address's newest connection goes before it.
        let (quiet_old, _) = tracker.admit(ip(9)).await.unwrap();
        tokio::time::advance(std::time::Duration::from_millis(5)).await;
        let mut flood = vec![];
        for _ in 0..3 {
            flood.push(tracker.admit(ip(1)).await.unwrap().0);
            tokio::time::advance(std::time::Duration::from_millis(5)).await;
        }
        let (_probe, evicted) = tracker.admit(ip(2)).await.unwrap();
        assert!(evicted);
        assert!(!quiet_old.slot().is_evicting());
        assert!(
            flood[0].slot().is_evicting(),
            "the flood's oldest goes first"
        );
        assert!(!flood[1].slot().is_evicting() && !flood[2].slot().is_evicting());
    }

    #[tokio::test(start_paused = true)]
    async fn admission_waits_for_an_evicted_connection_to_close() {
        let tracker = Tracker::new(Bounds {
            connections_max: 1,
            connections_per_ip_max: 0,
        });
        // 1 place + 16 closing room: fill all 17, each admission evicting the previous.
        let mut held = vec![];
        for _ in 0..17 {
            held.push(tracker.admit(ip(1)).await.unwrap().0);
        }
        let releaser = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            drop(held);
        });
        // No free place until the evicted ones close: admission waits for that.
        let (_late, evicted) = tracker.admit(ip(2)).await.unwrap();
        assert!(evicted);
        releaser.await.unwrap();
        // With nothing closing, a full wait ends in refusal.
        let mut held = vec![];
        for _ in 0..16 {
            held.push(tracker.admit(ip(3)).await.unwrap().0);
        }
        let started = tokio::time::Instant::now();
        assert_eq!(tracker.admit(ip(4)).await.err(), Some(Refusal::Full));
        assert_eq!(started.elapsed(), CLOSING_WAIT);
    }

    #[test]
    fn slot_phases() {
        let slot = Slot::default();
        slot.idle_since_ms.store(5, Ordering::Relaxed);
        assert_eq!(slot.waiting(), Some(Waiting::Idle { since_ms: 5 }));
        slot.bytes_arrived(|| 7);
        slot.bytes_arrived(|| 9);
        assert_eq!(slot.waiting(), Some(Waiting::Head { since_ms: 7 }));
        slot.request_started();
        assert_eq!(slot.waiting(), None);
        slot.bytes_arrived(|| 10); // body bytes: no header deadline
        slot.request_ended(12);
        assert_eq!(slot.waiting(), Some(Waiting::Idle { since_ms: 12 }));
        slot.upgraded();
        assert_eq!(slot.waiting(), None);
    }
}
