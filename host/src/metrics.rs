//! Prometheus metrics: job transitions by type and tenant, activation latency, Wasm attempt
//! durations, handlers' outbound HTTP requests by status, and (read at scrape time) queue
//! depth by state, waiting long polls and handler compile and cache-load counts. Rendered in
//! the text format at `GET /metrics`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::job::JobState;

/// The labels of a per-type, per-tenant metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job_type: String,
    pub tenant: String,
}

/// The labels of a handler's outbound HTTP requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub job_type: String,
    pub tenant: String,
    /// The response's status code, `refused` (by the grants) or `error` (no response).
    pub status: String,
}

/// What happened to a job, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    Created,
    Activated,
    Completed,
    Failed,
    TimedOut,
    /// Deleted by retention.
    Deleted,
}

/// The metrics that are counted as things happen.
#[derive(Debug)]
pub struct Metrics {
    created: Family<JobLabels, Counter>,
    activated: Family<JobLabels, Counter>,
    completed: Family<JobLabels, Counter>,
    failed: Family<JobLabels, Counter>,
    timed_out: Family<JobLabels, Counter>,
    deleted: Family<JobLabels, Counter>,
    /// From a job becoming activatable to its lease.
    activation_latency: Histogram,
    attempt_duration: Family<JobLabels, Histogram>,
    handler_http_requests: Family<HttpLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            created: Family::default(),
            activated: Family::default(),
            completed: Family::default(),
            failed: Family::default(),
            timed_out: Family::default(),
            deleted: Family::default(),
            // 100 µs to about 30 min.
            activation_latency: Histogram::new(exponential_buckets(0.000_1, 2.0, 25)),
            attempt_duration: Family::new_with_constructor(|| {
                // 10 µs to about 5 min.
                Histogram::new(exponential_buckets(0.000_01, 2.0, 25))
            }),
            handler_http_requests: Family::default(),
        }
    }
}

impl Metrics {
    /// Adds counted transitions, already summed per type and tenant.
    pub fn count<S: AsRef<str>>(&self, counts: HashMap<(S, S, Transition), u64>) {
        for ((job_type, tenant, transition), count) in counts {
            let family = match transition {
                Transition::Created => &self.created,
                Transition::Activated => &self.activated,
                Transition::Completed => &self.completed,
                Transition::Failed => &self.failed,
                Transition::TimedOut => &self.timed_out,
                Transition::Deleted => &self.deleted,
            };
            let labels = JobLabels {
                job_type: job_type.as_ref().to_string(),
                tenant: tenant.as_ref().to_string(),
            };
            family.get_or_create(&labels).inc_by(count);
        }
    }

    pub fn observe_activation_latency(&self, seconds: f64) {
        self.activation_latency.observe(seconds);
    }

    /// Counts one outbound HTTP request of a handler by how it ended.
    pub fn count_handler_http_request(&self, job_type: &str, tenant: &str, status: &str) {
        let labels = HttpLabels {
            job_type: job_type.to_string(),
            tenant: tenant.to_string(),
            status: status.to_string(),
        };
        self.handler_http_requests.get_or_create(&labels).inc();
    }

    pub fn observe_attempt(&self, job_type: &str, tenant: &str, seconds: f64) {
        let labels = JobLabels {
            job_type: job_type.to_string(),
            tenant: tenant.to_string(),
        };
        self.attempt_duration
            .get_or_create(&labels)
            .observe(seconds);
    }
}

/// What is read at scrape time.
#[derive(Clone, Debug, Default)]
pub struct GaugeReadings {
    /// Jobs by (tenant, type, state).
    pub queue_depth: Vec<(String, String, JobState, u64)>,
    pub waiting_long_polls: u64,
    /// Handler components compiled, and loaded from the compiled-code cache, since start.
    pub handler_loads: (u64, u64),
    /// Triggers by status (`active`, `paused`, `ended`).
    pub triggers: Vec<(&'static str, u64)>,
    /// Jobs created by trigger fires, and times the scheduler woke to fire, since start.
    pub trigger_activity: (u64, u64),
}

/// Where the readings of a scrape come from; read before the metrics are encoded, since
/// encoding cannot wait for the store.
#[async_trait::async_trait]
pub trait Gauges: Send + Sync + 'static {
    async fn read(&self) -> GaugeReadings;
}

/// The readings of the scrape being encoded.
struct ScrapeTime(Arc<Mutex<GaugeReadings>>);

impl std::fmt::Debug for ScrapeTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeTime")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DepthLabels {
    job_type: String,
    tenant: String,
    state: String,
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let readings = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let depth =
            Family::<DepthLabels, ConstGauge<i64>>::new_with_constructor(|| ConstGauge::new(0));
        {
            let mut family = encoder.encode_descriptor(
                "jobhost_jobs",
                "Stored jobs by state, type and tenant",
                None,
                depth.metric_type(),
            )?;
            for (tenant, job_type, state, count) in readings.queue_depth {
                let labels = DepthLabels {
                    job_type,
                    tenant,
                    state: state.as_str().to_string(),
                };
                let gauge = ConstGauge::new(count as i64);
                gauge.encode(family.encode_family(&labels)?)?;
            }
        }
        let waiting = ConstGauge::new(readings.waiting_long_polls as i64);
        waiting.encode(encoder.encode_descriptor(
            "jobhost_long_poll_waiters",
            "ActivateJobs long polls waiting for a job",
            None,
            waiting.metric_type(),
        )?)?;
        let (compiled, cached) = readings.handler_loads;
        let compiles = ConstCounter::new(compiled);
        compiles.encode(encoder.encode_descriptor(
            "jobhost_handler_compiles",
            "Handler components compiled to native code",
            None,
            compiles.metric_type(),
        )?)?;
        let loads = ConstCounter::new(cached);
        loads.encode(encoder.encode_descriptor(
            "jobhost_handler_cache_loads",
            "Handler components loaded from the compiled-code cache",
            None,
            loads.metric_type(),
        )?)?;
        {
            let mut family = encoder.encode_descriptor(
                "jobhost_triggers",
                "Triggers by status",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (status, count) in readings.triggers {
                let gauge = ConstGauge::new(count as i64);
                gauge.encode(family.encode_family(&[("status", status)])?)?;
            }
        }
        let (created, wakeups) = readings.trigger_activity;
        let created = ConstCounter::new(created);
        created.encode(encoder.encode_descriptor(
            "jobhost_trigger_jobs_created",
            "Jobs created by trigger fires",
            None,
            created.metric_type(),
        )?)?;
        let wakeups = ConstCounter::new(wakeups);
        wakeups.encode(encoder.encode_descriptor(
            "jobhost_trigger_scheduler_wakeups",
            "Times the trigger scheduler woke because a fire was due",
            None,
            wakeups.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The registry of every metric, ready to render.
pub struct MetricsRegistry {
    registry: Registry,
    gauges: Arc<dyn Gauges>,
    readings: Arc<Mutex<GaugeReadings>>,
    /// One scrape at a time sets the readings and encodes them.
    rendering: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRegistry")
    }
}

impl MetricsRegistry {
    pub fn new(metrics: &Metrics, gauges: Arc<dyn Gauges>) -> MetricsRegistry {
        let mut registry = Registry::default();
        let jobs = registry.sub_registry_with_prefix("jobhost_jobs");
        jobs.register("created", "Jobs created", metrics.created.clone());
        jobs.register(
            "activated",
            "Jobs leased to a worker",
            metrics.activated.clone(),
        );
        jobs.register("completed", "Jobs completed", metrics.completed.clone());
        jobs.register(
            "failed",
            "Jobs that ran out of retries (incidents)",
            metrics.failed.clone(),
        );
        jobs.register(
            "timed_out",
            "Leases that expired before the worker answered",
            metrics.timed_out.clone(),
        );
        jobs.register(
            "deleted",
            "Finished jobs deleted by retention",
            metrics.deleted.clone(),
        );
        registry.register_with_unit(
            "jobhost_activation_latency",
            "Time from a job becoming activatable to its lease",
            prometheus_client::registry::Unit::Seconds,
            metrics.activation_latency.clone(),
        );
        registry.register_with_unit(
            "jobhost_wasm_attempt_duration",
            "Duration of Wasm handler attempts",
            prometheus_client::registry::Unit::Seconds,
            metrics.attempt_duration.clone(),
        );
        registry.register(
            "jobhost_handler_http_requests",
            "Outbound HTTP requests of Wasm handlers, by status (or refused, error)",
            metrics.handler_http_requests.clone(),
        );
        let readings = Arc::new(Mutex::new(GaugeReadings::default()));
        registry.register_collector(Box::new(ScrapeTime(readings.clone())));
        MetricsRegistry {
            registry,
            gauges,
            readings,
            rendering: tokio::sync::Mutex::new(()),
        }
    }

    /// The Prometheus text format.
    pub async fn render(&self) -> String {
        let _one_at_a_time = self.rendering.lock().await;
        let readings = self.gauges.read().await;
        *self.readings.lock().unwrap_or_else(|e| e.into_inner()) = readings;
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
