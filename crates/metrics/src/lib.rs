//! Operational metrics (issue 19: "`GET /metrics` in Prometheus text format — ingest counts
//! and latencies per protocol, commit batch sizes, queue depths, outbox backlog, open alerts,
//! cache hit rates"). One process-wide [`Metrics`] ([`global`]) on the `prometheus-client`
//! crate (the Prometheus project's Rust client); the hot paths record into it, a scrape sets
//! the gauges it owns ([`Gauges`]) and encodes everything as OpenMetrics text ([`encode`]).
//! Labels carry kinds and outcomes only: never a patient, an institution's message or a key.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of one ingest: what came in and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestLabels {
    /// `hl7` (MLLP, CLI), `ecg` (HTTP upload, drop folder), `dicom` (C-STORE, STOW-RS).
    pub kind: String,
    /// The outcome word the sender is answered with (`stored`, `duplicate`, `rejected`, …).
    pub outcome: String,
}

/// Labels of a latency: the ingest kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// As in [`IngestLabels::kind`].
    pub kind: String,
}

/// Labels of an outbox gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboxLabels {
    /// `hl7` (results to the institutions) or `webhook` (alert notices).
    pub channel: String,
    /// `pending` or `parked`.
    pub state: String,
}

/// Labels of a cache counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` or `miss`.
    pub result: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The gauges a scrape fills in from the stores before encoding.
#[derive(Default)]
pub struct Gauges {
    /// Group-commit jobs waiting for the writer.
    pub commit_queue: Gauge,
    /// Outbound messages not delivered, by channel and state.
    pub outbox: Family<OutboxLabels, Gauge>,
    /// Open alerts by kind.
    pub alerts_open: Family<KindLabels, Gauge>,
    /// Reading tasks not completed or cancelled.
    pub tasks_open: Gauge,
    /// Event streams connected to this node.
    pub event_streams: Gauge,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Ingests by kind and outcome.
    pub ingests: Family<IngestLabels, Counter>,
    /// Ingest latency (receipt of the bytes to the answer's decision), seconds, by kind.
    pub ingest_seconds: HistogramFamily<KindLabels>,
    /// Jobs per group commit.
    pub commit_batch: Histogram,
    /// Time of one group commit (plan, journal append and fsync, index), seconds.
    pub commit_seconds: Histogram,
    /// Answer-cache lookups by result.
    pub answer_cache: Family<CacheLabels, Counter>,
    /// The scrape-time gauges.
    pub gauges: Gauges,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("huren");
        let ingests = Family::<IngestLabels, Counter>::default();
        let ingest_seconds: HistogramFamily<KindLabels> = Family::new_with_constructor(latency);
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let answer_cache = Family::<CacheLabels, Counter>::default();
        let gauges = Gauges::default();
        registry.register(
            "ingests",
            "Messages and files ingested, by kind and outcome",
            ingests.clone(),
        );
        registry.register(
            "ingest_seconds",
            "Ingest latency from receipt to the answer, by kind",
            ingest_seconds.clone(),
        );
        registry.register(
            "commit_batch_jobs",
            "Ingest jobs per group commit",
            commit_batch.clone(),
        );
        registry.register(
            "commit_seconds",
            "Duration of one group commit (journal fsync and index)",
            commit_seconds.clone(),
        );
        registry.register(
            "answer_cache_lookups",
            "Answer-cache lookups of the results and check endpoints, by result",
            answer_cache.clone(),
        );
        registry.register(
            "commit_queue_jobs",
            "Ingest jobs waiting for the store's writer",
            gauges.commit_queue.clone(),
        );
        registry.register(
            "outbox_messages",
            "Outbound messages not delivered, by channel and state",
            gauges.outbox.clone(),
        );
        registry.register(
            "alerts_open",
            "Open alerts, by kind",
            gauges.alerts_open.clone(),
        );
        registry.register(
            "tasks_open",
            "Reading tasks not completed or cancelled",
            gauges.tasks_open.clone(),
        );
        registry.register(
            "event_streams",
            "Event streams connected to this node",
            gauges.event_streams.clone(),
        );
        Metrics {
            registry,
            ingests,
            ingest_seconds,
            commit_batch,
            commit_seconds,
            answer_cache,
            gauges,
        }
    }

    /// Records one ingest of `kind` that ended with `outcome` after `took`.
    pub fn ingest(&self, kind: &str, outcome: &str, took: Duration) {
        self.ingests
            .get_or_create(&IngestLabels {
                kind: kind.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.ingest_seconds
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records one group commit of `jobs` jobs that took `took`.
    pub fn commit(&self, jobs: usize, took: Duration) {
        self.commit_batch.observe(jobs as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// Records one answer-cache lookup.
    pub fn cache(&self, hit: bool) {
        self.answer_cache
            .get_or_create(&CacheLabels {
                result: if hit { "hit" } else { "miss" }.to_string(),
            })
            .inc();
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static M: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &M
}

/// Everything as OpenMetrics text (ends with `# EOF`).
pub fn encode() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &global().registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_appear_in_the_text() {
        let m = global();
        m.ingest("hl7", "stored", Duration::from_millis(3));
        m.ingest("hl7", "stored", Duration::from_millis(4));
        m.commit(7, Duration::from_millis(2));
        m.cache(true);
        m.gauges.tasks_open.set(5);
        m.gauges
            .outbox
            .get_or_create(&OutboxLabels {
                channel: "webhook".into(),
                state: "pending".into(),
            })
            .set(2);
        let t = encode();
        assert!(
            t.contains("huren_ingests_total{kind=\"hl7\",outcome=\"stored\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("huren_ingest_seconds_count{kind=\"hl7\"} 2"),
            "{t}"
        );
        assert!(t.contains("huren_commit_batch_jobs_sum 7.0"), "{t}");
        assert!(
            t.contains("huren_answer_cache_lookups_total{result=\"hit\"} 1"),
            "{t}"
        );
        assert!(t.contains("huren_tasks_open 5"), "{t}");
        assert!(
            t.contains("huren_outbox_messages{channel=\"webhook\",state=\"pending\"} 2"),
            "{t}"
        );
        assert!(t.trim_end().ends_with("# EOF"));
    }
}
