//! bollard's types -> ours. Nothing past this file sees a bollard type.

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};

use crate::model::{ContainerFacts, ContainerId, Health, NetworkAddress};

/// `overlay(network_id)` says whether a network is a Swarm overlay.
pub fn container_facts(inspect: ContainerInspectResponse, overlay: impl Fn(&str) -> bool) -> Option<ContainerFacts> {
    let id = inspect.id?;
    let config = inspect.config.unwrap_or_default();
    let state = inspect.state.unwrap_or_default();
    let health = match state.health.and_then(|h| h.status) {
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
        _ => Health::None,
    };
    let network_mode = inspect.host_config.and_then(|h| h.network_mode).unwrap_or_default();
    let mut networks: Vec<NetworkAddress> = inspect
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| NetworkAddress {
            overlay: endpoint.network_id.as_deref().is_some_and(&overlay),
            ip: endpoint.ip_address.and_then(|ip| ip.parse().ok()),
            name,
        })
        .collect();
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    let mut exposed_tcp_ports: Vec<u16> = config
        .exposed_ports
        .unwrap_or_default()
        .iter()
        .filter_map(|spec| spec.strip_suffix("/tcp")?.parse().ok())
        .collect();
    exposed_tcp_ports.sort_unstable();
    Some(ContainerFacts {
        id: ContainerId(id),
        name: inspect.name.unwrap_or_default().trim_start_matches('/').to_owned(),
        image: config.image.unwrap_or_default(),
        created: inspect.created.map(|c| c.to_string()).unwrap_or_default(),
        started_at: state.started_at.unwrap_or_default(),
        labels: config.labels.unwrap_or_default(),
        running: state.running.unwrap_or(false),
        paused: state.paused.unwrap_or(false),
        health,
        host_network: network_mode == "host",
        networks,
        exposed_tcp_ports,
    })
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
        let facts = container_facts(inspect, |_| false).unwrap();
        assert_eq!(facts.name, "demo_website_1");
        assert_eq!(facts.exposed_tcp_ports, vec![8080]);
        assert_eq!(facts.health, Health::Healthy);
        assert!(facts.running && !facts.host_network);
        assert_eq!(facts.networks[0].ip.unwrap().to_string(), "172.20.0.3");
    }
}
