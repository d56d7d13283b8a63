//! Prometheus metrics, encoded by prometheus-client.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::model::Snapshot;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub service: String,
    pub state: String,
}

/// Every metric teal exports. Cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    pub reloads: Family<ResultLabel, Counter>,
    pub runtime_updates: Family<ResultLabel, Counter>,
    pub validation_failures: Counter,
    pub render_failures: Counter,
    pub reload_duration: Histogram,
    pub render_duration: Histogram,
    pub event_to_apply: Histogram,
    pub docker_events: Family<ActionLabel, Counter>,
    pub servers: Family<ServerLabels, Gauge>,
    pub docker_connected: Gauge,
    pub haproxy_exits: Counter,
    pub haproxy_restarts: Counter,
    pub haproxy_running: Gauge,
    pub services_refused: Gauge,
    pub certificates_refused: Gauge,
}

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("teal"),
            reloads: Family::default(),
            runtime_updates: Family::default(),
            validation_failures: Counter::default(),
            render_failures: Counter::default(),
            reload_duration: seconds_histogram(),
            render_duration: seconds_histogram(),
            event_to_apply: seconds_histogram(),
            docker_events: Family::default(),
            servers: Family::default(),
            docker_connected: Gauge::default(),
            haproxy_exits: Counter::default(),
            haproxy_restarts: Counter::default(),
            haproxy_running: Gauge::default(),
            services_refused: Gauge::default(),
            certificates_refused: Gauge::default(),
        };
        let r = &mut metrics.registry;
        r.register(
            "reloads",
            "HAProxy reloads (and starts) by result",
            metrics.reloads.clone(),
        );
        r.register(
            "runtime_updates",
            "Server changes applied through HAProxy's runtime API, by result",
            metrics.runtime_updates.clone(),
        );
        r.register(
            "config_validation_failures",
            "Rendered configs that haproxy -c rejected",
            metrics.validation_failures.clone(),
        );
        r.register(
            "render_failures",
            "Template renders that failed",
            metrics.render_failures.clone(),
        );
        r.register(
            "reload_duration_seconds",
            "Validate, write and reload (or runtime update) of one config",
            metrics.reload_duration.clone(),
        );
        r.register(
            "render_duration_seconds",
            "Template render time",
            metrics.render_duration.clone(),
        );
        r.register(
            "event_to_apply_seconds",
            "From a change reaching teal's model to HAProxy running it (debounce included)",
            metrics.event_to_apply.clone(),
        );
        r.register(
            "docker_events",
            "Docker events handled, by action",
            metrics.docker_events.clone(),
        );
        r.register("servers", "Servers by service and state", metrics.servers.clone());
        r.register(
            "docker_connected",
            "1 while the Docker event stream is up",
            metrics.docker_connected.clone(),
        );
        r.register(
            "haproxy_exits",
            "Times the supervised HAProxy master ended without teal asking (crash, kill, failed start)",
            metrics.haproxy_exits.clone(),
        );
        r.register(
            "haproxy_restarts",
            "Times teal started the supervised HAProxy again after it ended",
            metrics.haproxy_restarts.clone(),
        );
        r.register(
            "haproxy_running",
            "1 while the supervised HAProxy master runs",
            metrics.haproxy_running.clone(),
        );
        r.register(
            "services_refused",
            "Services HAProxy refused, left out while every other change is applied",
            metrics.services_refused.clone(),
        );
        r.register(
            "certificates_refused",
            "Files of --certs HAProxy cannot load, left out",
            metrics.certificates_refused.clone(),
        );
        metrics
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    pub fn observe_snapshot(&self, snapshot: &Snapshot) {
        self.servers.clear();
        for service in &snapshot.services {
            for server in &service.servers {
                self.servers
                    .get_or_create(&ServerLabels {
                        service: service.name.to_string(),
                        state: server.state.to_string(),
                    })
                    .inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prometheus_text() {
        let metrics = Metrics::default();
        metrics.reloads.get_or_create(&ResultLabel { result: "ok" }).inc();
        metrics.docker_connected.set(1);
        let text = metrics.encode();
        assert!(text.contains("teal_reloads_total{result=\"ok\"} 1"), "{text}");
        assert!(text.contains("teal_docker_connected 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
