//! The runtime API commands that take HAProxy's servers from one snapshot to
//! the next, when the services themselves did not change.

use crate::model::labels::ServiceName;
use crate::model::{Change, Server, ServerState, Snapshot};
use crate::render::{config_weight, ServerDefaults};

use super::command::{Command, Target};

/// The commands that take HAProxy from `before` to `after`; `None` when the
/// difference needs a reload (a service added, removed or changed, or a
/// server's maxconn, which the runtime API cannot set).
pub fn plan(before: &Snapshot, after: &Snapshot) -> Option<Vec<Command>> {
    if !before.same_services(after) {
        return None;
    }
    // Same services on both sides, so each server's service is in `after`.
    let defaults = |service: &ServiceName| {
        after
            .services
            .iter()
            .find(|s| &s.name == service)
            .map(|s| ServerDefaults::of(s))
    };
    let target = |service: &str, server: &Server| Target {
        backend: service.to_owned(),
        server: server.name.clone(),
    };
    let mut commands = Vec::new();
    for change in before.changes(after) {
        match change {
            Change::ServerAdded { service, server } => {
                let target = target(service.as_str(), server);
                commands.push(Command::AddServer {
                    target: target.clone(),
                    address: server.address,
                    port: server.port,
                    weight: config_weight(server),
                    maxconn: server.maxconn,
                    defaults: defaults(service)?,
                });
                commands.push(Command::EnableHealth(target.clone()));
                if server.state != ServerState::Maint {
                    commands.push(Command::SetState(target, server.state));
                }
            }
            Change::ServerRemoved { service, server } => {
                let target = target(service.as_str(), server);
                commands.push(Command::SetState(target.clone(), ServerState::Maint));
                commands.push(Command::DelServer(target));
            }
            Change::ServerUpdated { service, server, was } => {
                if server.maxconn != was.maxconn {
                    return None;
                }
                let target = target(service.as_str(), server);
                if (server.address, server.port) != (was.address, was.port) {
                    commands.push(Command::SetAddr {
                        target: target.clone(),
                        address: server.address,
                        port: server.port,
                    });
                }
                // A server that drained since its config line or `add server`
                // has weight 0 in HAProxy: leaving drain restores its weight.
                // While it drains its weight stays 0 (a canary reweighting
                // its service must not put it back in rotation).
                let leaves_drain = was.state == ServerState::Drain && server.state != ServerState::Drain;
                let drains = server.state == ServerState::Drain;
                if !drains && (server.weight != was.weight || leaves_drain) {
                    commands.push(Command::SetWeight(target.clone(), server.weight));
                }
                if server.state != was.state {
                    commands.push(Command::SetState(target, server.state));
                }
            }
            Change::ContainerExcluded(_) => {}
        }
    }
    Some(commands)
}

#[cfg(test)]
#[path = "plan_props.rs"]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{facts, scope};
    use crate::model::{ContainerUpdate, Inventory};

    fn lines(commands: Option<Vec<Command>>) -> Vec<String> {
        commands.expect("runtime plan").iter().map(Command::to_string).collect()
    }

    #[test]
    fn scale_up_and_down_needs_no_reload() {
        let mut inv = Inventory::default();
        inv.apply(ContainerUpdate::Upsert(facts("a", "web", "10.0.0.2")));
        let one = inv.snapshot(&scope());
        inv.apply(ContainerUpdate::Upsert(facts("bb", "web", "10.0.0.3")));
        let two = inv.snapshot(&scope());
        assert_eq!(
            lines(plan(&one, &two)),
            [
                format!(
                    "add server web/app-bb-bb000000 10.0.0.3:8080 weight 100 {}",
                    ServerDefaults { check_interval_ms: 500 }
                ),
                "enable health web/app-bb-bb000000".into(),
                "set server web/app-bb-bb000000 state ready".into(),
            ]
        );
        let down = plan(&two, &one).unwrap();
        assert_eq!(down[0].to_string(), "set server web/app-bb-bb000000 state maint");
        assert_eq!(down[1].to_string(), "del server web/app-bb-bb000000");
        assert!(down[1].retry_while_busy() && !down[0].retry_while_busy());
    }

    #[test]
    fn drain_and_health_are_state_changes() {
        let mut inv = Inventory::default();
        let a = facts("a", "web", "10.0.0.2");
        inv.apply(ContainerUpdate::Upsert(a.clone()));
        let ready = inv.snapshot(&scope());
        inv.apply(ContainerUpdate::Drain(a.id.clone()));
        let drained = inv.snapshot(&scope());
        assert_eq!(
            lines(plan(&ready, &drained)),
            ["set server web/app-a-a0000000 state drain"]
        );
    }

    #[test]
    fn a_new_service_needs_a_reload() {
        let mut inv = Inventory::default();
        inv.apply(ContainerUpdate::Upsert(facts("a", "web", "10.0.0.2")));
        let one = inv.snapshot(&scope());
        inv.apply(ContainerUpdate::Upsert(facts("bb", "api", "10.0.0.3")));
        assert!(plan(&one, &inv.snapshot(&scope())).is_none());
    }
}
