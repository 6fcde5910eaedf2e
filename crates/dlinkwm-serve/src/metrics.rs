//! The server's Prometheus metrics, per plugin and entry.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    plugin: String,
    entry: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Entry {
    plugin: String,
    entry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabel {
    plugin: String,
    result: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// The server's metrics: requests by outcome, latency, calls in flight, live instances, reloads
/// and rollbacks, fuel consumed. An application that mounts the router in its own app can
/// export them with [`Metrics::encode`].
pub struct Metrics {
    registry: Registry,
    requests: Family<Outcome, Counter>,
    latency: Family<Entry, Histogram, fn() -> Histogram>,
    in_flight: Family<PluginLabel, Gauge>,
    live_instances: Family<PluginLabel, Gauge>,
    reloads: Family<ReloadLabel, Counter>,
    rollbacks: Family<PluginLabel, Counter>,
    fuel: Family<Entry, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Records every call of the server's plugins: the host's call observer.
pub(crate) struct Recorder(pub(crate) std::sync::Arc<Metrics>);

impl dlinkwm_host::CallObserver for Recorder {
    fn call_finished(&self, call: &dlinkwm_host::CallRecord<'_>) {
        let file = std::path::Path::new(call.plugin)
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or(call.plugin);
        let route = crate::server::route_name(file);
        let (entry, outcome) = match call.outcome {
            Ok(()) => (call.entry, "ok"),
            Err(error) => {
                let kind = crate::status::plugin_status(call.entry, error).1;
                // Names the plugin has no entry for (or may not call) come from clients: one
                // label for all of them, so no client creates series.
                let entry = match error {
                    dlinkwm_host::PluginError::EntryNotFound { .. }
                    | dlinkwm_host::PluginError::EntryNotAllowed { .. } => "_unknown",
                    _ => call.entry,
                };
                (entry, kind)
            }
        };
        self.0
            .call_finished(route, entry, outcome, call.duration, call.fuel_consumed);
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("dlinkwm");
        let requests = Family::<Outcome, Counter>::default();
        let latency = Family::<Entry, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let in_flight = Family::<PluginLabel, Gauge>::default();
        let live_instances = Family::<PluginLabel, Gauge>::default();
        let reloads = Family::<ReloadLabel, Counter>::default();
        let rollbacks = Family::<PluginLabel, Counter>::default();
        let fuel = Family::<Entry, Counter>::default();
        registry.register(
            "requests",
            "Calls by plugin, entry and outcome (ok or the error kind)",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time of calls, by plugin and entry",
            latency.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Calls running now, by plugin",
            in_flight.clone(),
        );
        registry.register(
            "live_instances",
            "Instances of the current version alive (idle or in a call), by plugin",
            live_instances.clone(),
        );
        registry.register(
            "reloads",
            "Reloads by plugin and result (ok, refused)",
            reloads.clone(),
        );
        registry.register("rollbacks", "Rollbacks by plugin", rollbacks.clone());
        registry.register(
            "fuel_consumed",
            "Fuel consumed by calls, when fuel is metered",
            fuel.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            in_flight,
            live_instances,
            reloads,
            rollbacks,
            fuel,
        }
    }

    pub(crate) fn call_finished(
        &self,
        plugin: &str,
        entry: &str,
        outcome: &str,
        took: Duration,
        fuel: Option<u64>,
    ) {
        self.requests
            .get_or_create(&Outcome {
                plugin: plugin.to_owned(),
                entry: entry.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        let labels = Entry {
            plugin: plugin.to_owned(),
            entry: entry.to_owned(),
        };
        self.latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(fuel) = fuel {
            self.fuel.get_or_create(&labels).inc_by(fuel);
        }
    }

    pub(crate) fn in_flight(&self, plugin: &str) -> Gauge {
        self.in_flight
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .clone()
    }

    pub(crate) fn set_live_instances(&self, plugin: &str, live: usize) {
        self.live_instances
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .set(i64::try_from(live).unwrap_or(i64::MAX));
    }

    pub(crate) fn reloaded(&self, plugin: &str, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.reloads
            .get_or_create(&ReloadLabel {
                plugin: plugin.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub(crate) fn rolled_back(&self, plugin: &str) {
        self.rollbacks
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .inc();
    }

    /// The metrics in the OpenMetrics text format (which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a `String` cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
