//! How the metrics leave the process: the `metrics` facade's one recorder, rendered as
//! Prometheus text by `/metrics`.
//!
//! Two Prometheus recorders sit behind it ([`Split`]):
//! - **main**: every family whose labels the code bounds (route, command, outcome, channel,
//!   reason); its series live as long as the process.
//! - **per event**: the families named `regengine_event_*`, labelled by event (and pool or gate).
//!   A series not set for `idle` leaves the scrape. Live events set theirs again on their tick
//!   (every `engine.passivate_after_secs / 2`), and `idle` is `passivate_after_secs`, so what
//!   leaves is the series of events that passivated (or whose door went quiet). The bound is the
//!   events in use within about twice `passivate_after_secs`, times their pools and gates.
//!
//! Process metrics (`process_*` from `metrics-process`: the names every Prometheus client uses,
//! without our prefix) and the tokio runtime's gauges are refreshed at each scrape. An upkeep
//! thread drains histogram samples and drops idle per-event series every few seconds, so neither
//! piles up in memory when nobody scrapes.

use anyhow::Context;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::MetricKindMask;
use std::time::Duration;

/// Families whose names start with this are per-event series (see the module's documentation).
pub const PER_EVENT_PREFIX: &str = "regengine_event_";

/// How often the upkeep thread drains histograms and drops idle per-event series.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Renders the server's metrics; cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    main: PrometheusHandle,
    per_event: PrometheusHandle,
    process: metrics_process::Collector,
}

impl Exporter {
    /// Installs the process's metrics recorder (once per process), describes every family, and
    /// starts the upkeep thread. `per_event_idle`: how long a per-event series stays without
    /// being set.
    pub fn install(per_event_idle: Duration) -> anyhow::Result<Self> {
        let latency = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let sizes = [
            1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
        ];
        let main = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)?
            .set_buckets_for_metric(Matcher::Prefix("regengine_journal_batch_".into()), &sizes)?
            .build_recorder();
        let per_event = PrometheusBuilder::new()
            .idle_timeout(
                MetricKindMask::COUNTER | MetricKindMask::GAUGE,
                Some(per_event_idle),
            )
            .build_recorder();
        let exporter = Exporter {
            main: main.handle(),
            per_event: per_event.handle(),
            process: metrics_process::Collector::default(),
        };
        metrics::set_global_recorder(Split { main, per_event })
            .context("installing the metrics recorder")?;
        super::describe();
        exporter.process.describe();
        let upkeep = exporter.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.upkeep();
                }
            })
            .context("starting the metrics upkeep thread")?;
        Ok(exporter)
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        self.process.collect();
        runtime_gauges();
        let mut text = self.main.render();
        text.push_str(&self.per_event.render());
        text
    }

    /// Drains histogram samples into their buckets and drops the per-event series idle past
    /// their timeout (the exporter drops them while rendering).
    fn upkeep(&self) {
        self.main.run_upkeep();
        drop(self.per_event.render());
    }
}

/// The tokio runtime's stable metrics, when called on a runtime.
fn runtime_gauges() {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let m = runtime.metrics();
    metrics::gauge!("regengine_tokio_workers").set(m.num_workers() as f64);
    metrics::gauge!("regengine_tokio_alive_tasks").set(m.num_alive_tasks() as f64);
    metrics::gauge!("regengine_tokio_global_queue_depth").set(m.global_queue_depth() as f64);
}

/// The facade's recorder: per-event families to their own recorder, the rest to the main one.
struct Split {
    main: PrometheusRecorder,
    per_event: PrometheusRecorder,
}

impl Split {
    fn pick(&self, name: &str) -> &PrometheusRecorder {
        if name.starts_with(PER_EVENT_PREFIX) {
            &self.per_event
        } else {
            &self.main
        }
    }
}

impl Recorder for Split {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.pick(key.as_str())
            .describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.pick(key.as_str())
            .describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.pick(key.as_str())
            .describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.pick(key.name()).register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.pick(key.name()).register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.pick(key.name()).register_histogram(key, metadata)
    }
}
