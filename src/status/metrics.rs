//! Prometheus metrics, encoded by prometheus-client.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::held::HeldRequests;
use crate::model::labels::ServiceName;
use crate::model::{ServerState, Service, Snapshot};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HeldLabels {
    pub service: String,
    /// released (a server came), expired (the bound passed), refused (too many held), handed (to a new worker at a reload).
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    pub name: String,
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
    pub swarm_following: Gauge,
    pub haproxy_exits: Counter,
    pub haproxy_restarts: Counter,
    pub haproxy_running: Gauge,
    pub services_refused: Gauge,
    pub certificates_refused: Gauge,
    /// As HAProxy's running worker counts them, read at each scrape.
    pub requests_holding: Family<ServiceLabel, Gauge>,
    pub requests_held: Family<HeldLabels, Counter>,
    /// Certificates (ACME and `--certs`): seconds until each expires, at each scrape.
    pub certificate_expiry: Family<NameLabel, Gauge>,
    /// ACME names whose last order failed, `--certs` files HAProxy refuses.
    pub certificate_errors: Family<NameLabel, Gauge>,
    /// `teal rollout` and `teal switch`, from the state dir at each scrape.
    pub deploys: Family<OutcomeLabel, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// completed, rolled_back, failed.
    pub outcome: &'static str,
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
            swarm_following: Gauge::default(),
            haproxy_exits: Counter::default(),
            haproxy_restarts: Counter::default(),
            haproxy_running: Gauge::default(),
            services_refused: Gauge::default(),
            certificates_refused: Gauge::default(),
            requests_holding: Family::default(),
            requests_held: Family::default(),
            certificate_expiry: Family::default(),
            certificate_errors: Family::default(),
            deploys: Family::default(),
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
            "From a change reaching teal's model to HAProxy running it (a reload's wait for its window included)",
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
            "swarm_following",
            "1 while teal lists the swarm's services and tasks from a manager (0 also when no manager)",
            metrics.swarm_following.clone(),
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
        r.register(
            "requests_holding",
            "Requests waiting now for a server of their service (none was ready)",
            metrics.requests_holding.clone(),
        );
        r.register(
            "held_requests",
            "Requests that waited for a server, by outcome; counted by the running HAProxy worker, so a reload \
             starts them again at 0",
            metrics.requests_held.clone(),
        );
        r.register(
            "certificate_expiry_seconds",
            "Seconds until each certificate expires (negative once it has): ACME's by host name, --certs files by file name",
            metrics.certificate_expiry.clone(),
        );
        r.register(
            "certificate_failing",
            "1 for each ACME host name whose last order failed, and each --certs file HAProxy refuses (the reason is in /status)",
            metrics.certificate_errors.clone(),
        );
        r.register(
            "deploys",
            "Deploys by teal rollout and teal switch, by outcome (completed, rolled_back, failed)",
            metrics.deploys.clone(),
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

    /// Sets the deploy counts to those the commands recorded.
    pub fn observe_deploys(&self, deploys: &crate::deploy::record::Deploys) {
        for outcome in crate::deploy::Outcome::ALL {
            let labels = OutcomeLabel {
                outcome: outcome.as_str(),
            };
            self.deploys
                .get_or_create(&labels)
                .inner()
                .store(outcome.count(deploys), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Sets the held-request metrics to the hold script's counts.
    pub fn observe_held(&self, held: &HashMap<String, HeldRequests>) {
        self.requests_holding.clear();
        self.requests_held.clear();
        for (service, counts) in held {
            let service = service.clone();
            self.requests_holding
                .get_or_create(&ServiceLabel {
                    service: service.clone(),
                })
                .set(counts.holding as i64);
            for (outcome, value) in [
                ("released", counts.released),
                ("expired", counts.expired),
                ("refused", counts.refused),
                ("handed", counts.handed),
            ] {
                let labels = HeldLabels {
                    service: service.clone(),
                    outcome,
                };
                self.requests_held
                    .get_or_create(&labels)
                    .inner()
                    .store(value, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Sets the certificate metrics to `certificates` as of `now`.
    pub fn observe_certificates(&self, certificates: &[crate::acme::CertificateStatus], now: std::time::SystemTime) {
        self.certificate_expiry.clear();
        self.certificate_errors.clear();
        for certificate in certificates {
            let label = NameLabel {
                name: certificate.name.clone(),
            };
            if let Some(left) = certificate.seconds_left(now) {
                self.certificate_expiry.get_or_create(&label).set(left);
            }
            if certificate.wanted {
                let failing = certificate.last_error.is_some() as i64;
                self.certificate_errors.get_or_create(&label).set(failing);
            }
        }
    }

    /// The servers gauge, from `before` to `after`: only the services that
    /// changed are counted again (one both share, the same `Arc`, did not).
    /// Recounting all 10,000 servers at each snapshot was the model owner's
    /// largest cost once snapshots were built by service.
    pub fn observe_snapshot(&self, before: &Snapshot, after: &Snapshot) {
        let mut gone: HashMap<&ServiceName, &Arc<Service>> =
            before.services.iter().map(|service| (&service.name, service)).collect();
        for service in &after.services {
            match gone.remove(&service.name) {
                Some(was) if Arc::ptr_eq(was, service) => continue,
                Some(was) => self.forget_servers(was),
                None => {}
            }
            // Counted per service first: one set of labels per service and
            // state, not one per server.
            let mut by_state: BTreeMap<ServerState, i64> = BTreeMap::new();
            for server in &service.servers {
                *by_state.entry(server.state).or_default() += 1;
            }
            for (state, count) in by_state {
                self.servers.get_or_create(&server_labels(service, state)).set(count);
            }
        }
        for service in gone.into_values() {
            self.forget_servers(service);
        }
    }

    fn forget_servers(&self, service: &Service) {
        for server in &service.servers {
            self.servers.remove(&server_labels(service, server.state));
        }
    }
}

fn server_labels(service: &Service, state: ServerState) -> ServerLabels {
    ServerLabels {
        service: service.name.to_string(),
        state: state.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::facts;
    use crate::model::ContainerUpdate;

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

    #[test]
    fn the_servers_gauge_follows_each_snapshot() {
        let mut inventory = crate::model::Inventory::default();
        let scope = crate::model::tests::scope();
        let metrics = Metrics::default();
        let empty = Snapshot::default();
        inventory.apply(ContainerUpdate::Upsert(facts("a", "web", "10.0.0.2")));
        inventory.apply(ContainerUpdate::Upsert(facts("b", "api", "10.0.0.3")));
        let first = inventory.snapshot(&scope);
        metrics.observe_snapshot(&empty, &first);
        inventory.apply(ContainerUpdate::Drain(facts("a", "web", "10.0.0.2").id));
        inventory.apply(ContainerUpdate::Remove(facts("b", "api", "10.0.0.3").id));
        metrics.observe_snapshot(&first, &inventory.snapshot(&scope));
        let text = metrics.encode();
        assert!(
            text.contains("teal_servers{service=\"web\",state=\"drain\"} 1"),
            "{text}"
        );
        assert!(!text.contains("state=\"ready\""), "{text}");
        assert!(!text.contains("service=\"api\""), "{text}");
    }

    #[test]
    fn held_requests_are_the_scripts_counts() {
        let metrics = Metrics::default();
        let counts = HeldRequests {
            holding: 3,
            held: 12,
            released: 8,
            expired: 1,
            refused: 2,
            handed: 0,
        };
        metrics.observe_held(&HashMap::from([("web".to_owned(), counts)]));
        let text = metrics.encode();
        assert!(text.contains("teal_requests_holding{service=\"web\"} 3"), "{text}");
        assert!(
            text.contains("teal_held_requests_total{service=\"web\",outcome=\"released\"} 8"),
            "{text}"
        );
        assert!(
            text.contains("teal_held_requests_total{service=\"web\",outcome=\"refused\"} 2"),
            "{text}"
        );
    }
}
