//! An event's check-in statistics: admissions, duplicates and exits, per gate and per
//! minute, written by the read model with the scans.

use crate::pool::Admission;
use serde::{Deserialize, Serialize};

/// Distinct gates counted per event; scans at further gates count under `other`.
pub const STATS_GATES_MAX: usize = 100;
/// Minutes of admissions kept per event (a sliding window).
pub const STATS_MINUTES_MAX: usize = 180;

/// An event's check-in statistics (a read model, written with the scans).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInStats {
    /// Admissions (first admissions, re-entries and earlier offline scans), all lists.
    pub admitted: u64,
    /// Scans refused as duplicates.
    pub duplicates: u64,
    /// Exit scans.
    pub exits: u64,
    /// Admissions per gate (`""`: no gate named; `"other"` beyond `STATS_GATES_MAX` gates).
    pub per_gate: std::collections::BTreeMap<String, u64>,
    /// Admissions per minute (Unix minute, count), oldest first, the last `STATS_MINUTES_MAX`.
    pub per_minute: Vec<(i64, u64)>,
}

impl CheckInStats {
    /// Sets the event's check-in counters to these durable totals: the numbers the hub
    /// pushes and the API shows, so a restart continues them instead of resetting them.
    /// Per-event series (`regengine_event_*`): the exporter drops them when they are not set
    /// for a while, so the event's tick sets them again while the event is in memory (see
    /// `EventShared::republish_series`). Admissions per minute:
    /// `increase(regengine_event_checkin_admitted_total[1m])`.
    pub fn publish_metrics(&self, event: crate::ids::EventId) {
        let event = event.to_string();
        metrics::counter!("regengine_event_checkin_admitted_total", "event" => event.clone())
            .absolute(self.admitted);
        metrics::counter!("regengine_event_checkin_duplicates_total", "event" => event.clone())
            .absolute(self.duplicates);
        metrics::counter!("regengine_event_checkin_exits_total", "event" => event.clone())
            .absolute(self.exits);
        for (gate, n) in &self.per_gate {
            let labels = [("event", event.clone()), ("gate", gate.clone())];
            metrics::counter!("regengine_event_checkin_admitted_by_gate_total", &labels)
                .absolute(*n);
        }
    }

    /// Counts one decided scan. An uploaded scan that replaced an earlier-recorded first
    /// admission (`superseded`) moves that admission, it does not add one.
    pub fn count(
        &mut self,
        result: &crate::pool::scan::ScanResult,
        admission: &Admission,
        superseded: Option<&Admission>,
    ) {
        use crate::pool::scan::ScanResult;
        match result {
            ScanResult::Duplicate => self.duplicates += 1,
            ScanResult::Exited => self.exits += 1,
            ScanResult::Admitted => {
                match superseded {
                    Some(old) => {
                        // The replaced admission becomes a duplicate.
                        self.duplicates += 1;
                        let gate = old.gate.clone().unwrap_or_default();
                        if let Some(n) = self.per_gate.get_mut(&gate) {
                            *n = n.saturating_sub(1);
                        }
                        let minute = old.at.timestamp().div_euclid(60);
                        if let Some((_, n)) = self.per_minute.iter_mut().find(|(m, _)| *m == minute)
                        {
                            *n = n.saturating_sub(1);
                        }
                    }
                    None => self.admitted += 1,
                }
                let gate = admission.gate.clone().unwrap_or_default();
                let key =
                    if self.per_gate.contains_key(&gate) || self.per_gate.len() < STATS_GATES_MAX {
                        gate
                    } else {
                        "other".to_owned()
                    };
                *self.per_gate.entry(key).or_default() += 1;
                let minute = admission.at.timestamp().div_euclid(60);
                match self.per_minute.iter_mut().find(|(m, _)| *m == minute) {
                    Some((_, n)) => *n += 1,
                    None => {
                        self.per_minute.push((minute, 1));
                        self.per_minute.sort_unstable();
                        if self.per_minute.len() > STATS_MINUTES_MAX {
                            self.per_minute.remove(0);
                        }
                    }
                }
            }
        }
    }
}
