//! bollard's types -> ours. Past `src/docker/` nothing sees a bollard type.

use std::collections::HashMap;

use bollard::models::{ContainerInspectResponse, EventMessage, EventMessageTypeEnum, HealthStatusEnum};

use super::client::{Event, EventSource, RunState};
use crate::model::{ContainerFacts, ContainerId, Health, NetworkAddress};

/// `overlay(network_id)` says whether a network is a Swarm overlay.
pub fn container_facts(inspect: &ContainerInspectResponse, overlay: impl Fn(&str) -> bool) -> Option<ContainerFacts> {
    let id = inspect.id.clone()?;
    let config = inspect.config.clone().unwrap_or_default();
    let state = inspect.state.clone().unwrap_or_default();
    let network_mode = inspect
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    let mut networks: Vec<NetworkAddress> = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| NetworkAddress {
            overlay: endpoint.network_id.as_deref().is_some_and(&overlay),
            ip: endpoint.ip_address.and_then(|ip| ip.parse().ok()),
            name,
        })
        .collect();
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    Some(ContainerFacts {
        id: ContainerId(id),
        name: inspect
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image: config.image.unwrap_or_default(),
        created: inspect.created.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        started_at: state.started_at.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        running: state.running.unwrap_or(false),
        paused: state.paused.unwrap_or(false),
        health: health(state.health.as_ref().and_then(|h| h.status)),
        host_network: network_mode == "host",
        networks,
        exposed_tcp_ports: tcp_ports(&config.exposed_ports),
        node: None,
    })
}

fn health(status: Option<HealthStatusEnum>) -> Health {
    match status {
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
        _ => Health::None,
    }
}

/// `["8080/tcp", "53/udp"]` -> `[8080]`, sorted.
pub fn tcp_ports(exposed: &Option<Vec<String>>) -> Vec<u16> {
    let mut ports: Vec<u16> = exposed
        .iter()
        .flatten()
        .filter_map(|spec| spec.strip_suffix("/tcp")?.parse().ok())
        .collect();
    ports.sort_unstable();
    ports
}

pub fn run_state(inspect: &ContainerInspectResponse) -> RunState {
    let state = inspect.state.clone().unwrap_or_default();
    let health_state = state.health.unwrap_or_default();
    RunState {
        running: state.running == Some(true),
        restarting: state.restarting == Some(true),
        exit_code: state.exit_code.unwrap_or_default(),
        health: health(health_state.status),
        last_check_output: health_state
            .log
            .unwrap_or_default()
            .last()
            .and_then(|l| l.output.as_deref())
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty()),
    }
}

pub fn event(event: EventMessage) -> Event {
    let (actor, attributes) = match event.actor {
        Some(actor) => (actor.id, actor.attributes.unwrap_or_default()),
        None => (None, HashMap::new()),
    };
    Event {
        source: match event.typ {
            Some(EventMessageTypeEnum::CONTAINER) => EventSource::Container,
            Some(EventMessageTypeEnum::NETWORK) => EventSource::Network,
            Some(EventMessageTypeEnum::SERVICE) => EventSource::Service,
            Some(EventMessageTypeEnum::NODE) => EventSource::Node,
            _ => EventSource::Other,
        },
        action: event.action.unwrap_or_default(),
        actor,
        attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_a_daemon_answer() {
        // Trimmed from a Docker 20.10 inspect of a compose container.
        let json = r#"{
            "Id": "4f9c2b7d1e3a4f9c2b7d1e3a4f9c2b7d1e3a4f9c2b7d1e3a4f9c2b7d1e3a4f9c",
            "Created": "2026-11-22T01:02:03.123456789Z",
            "Name": "/demo_website_1",
            "State": {"Status": "running", "Running": true, "Paused": false,
                      "StartedAt": "2026-11-22T01:02:04Z", "Health": {"Status": "healthy"}},
            "HostConfig": {"NetworkMode": "demo_default"},
            "Config": {"Image": "app:2", "Labels": {"teal.service": "website"},
                       "ExposedPorts": {"8080/tcp": {}, "53/udp": {}}},
            "NetworkSettings": {"Networks": {"demo_default": {"NetworkID": "n1", "IPAddress": "172.20.0.3"}}}
        }"#;
        let inspect: ContainerInspectResponse = serde_json::from_str(json).unwrap();
        let facts = container_facts(&inspect, |_| false).unwrap();
        assert_eq!(facts.name, "demo_website_1");
        assert_eq!(facts.exposed_tcp_ports, vec![8080]);
        assert_eq!(facts.health, Health::Healthy);
        assert!(facts.running && !facts.host_network);
        assert_eq!(facts.networks[0].ip.unwrap().to_string(), "172.20.0.3");
    }
}
