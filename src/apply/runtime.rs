//! Server changes through HAProxy's runtime API, without a reload.
//!
//! Used when the services themselves did not change (same names, routes,
//! modes, checks): then adding, removing, draining or re-weighting servers
//! is a handful of admin-socket commands. HAProxy 2.6 notes: a dynamic
//! server is born in maintenance and inherits no `default-server`, so the
//! `add server` line carries everything; `del server` is refused while
//! sessions are attached, so it is retried for a moment.

use std::path::Path;
use std::time::Duration;

use crate::model::{Change, Server, ServerState, Snapshot};

use super::socket;

/// HAProxy 2.6 gives a dynamic server no pool of idle connections (a limit
/// of 0, purged at once), so every request to it opened a new connection:
/// 200 keep-alive requests made 200 connects, against 1 for a server from the
/// config. These are the values a config server gets by default.
const IDLE_POOL: &str = "pool-max-conn -1 pool-purge-delay 5s";

/// One admin-socket command. Backend = service name and server = server
/// name, as the default template renders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub command: String,
    /// `del server` waits until the server's last sessions are gone.
    pub retry_while_busy: bool,
}

impl Step {
    fn once(command: String) -> Self {
        Self {
            command,
            retry_while_busy: false,
        }
    }
}

/// The commands that take HAProxy from `before` to `after`; `None` when the
/// difference needs a reload.
pub fn plan(before: &Snapshot, after: &Snapshot) -> Option<Vec<Step>> {
    if !before.same_services(after) {
        return None;
    }
    let interval = |service: &str| {
        after
            .services
            .iter()
            .find(|s| s.name.as_str() == service)
            .map(|s| s.health.interval_ms)
            .unwrap_or(500)
    };
    let mut steps = Vec::new();
    for change in before.changes(after) {
        match change {
            Change::ServerAdded { service, server } => {
                let target = format!("{service}/{}", server.name);
                let maxconn = server.maxconn.map(|m| format!(" maxconn {m}")).unwrap_or_default();
                steps.push(Step::once(format!(
                    "add server {target} {}:{} weight {}{maxconn} {IDLE_POOL} check inter {}ms fall 3 rise 1 fastinter 100ms",
                    server.address,
                    server.port,
                    configured_weight(server),
                    interval(service.as_str()),
                )));
                steps.push(Step::once(format!("enable health {target}")));
                if server.state != ServerState::Maint {
                    steps.push(Step::once(format!(
                        "set server {target} state {}",
                        state_word(server.state)
                    )));
                }
            }
            Change::ServerRemoved { service, server } => {
                let target = format!("{service}/{}", server.name);
                steps.push(Step::once(format!("set server {target} state maint")));
                steps.push(Step {
                    command: format!("del server {target}"),
                    retry_while_busy: true,
                });
            }
            Change::ServerUpdated { service, server, was } => {
                let target = format!("{service}/{}", server.name);
                if (server.address, server.port) != (was.address, was.port) {
                    steps.push(Step::once(format!(
                        "set server {target} addr {} port {}",
                        server.address, server.port
                    )));
                }
                if server.weight != was.weight {
                    steps.push(Step::once(format!("set server {target} weight {}", server.weight)));
                }
                if server.state != was.state {
                    steps.push(Step::once(format!(
                        "set server {target} state {}",
                        state_word(server.state)
                    )));
                }
                if server.maxconn != was.maxconn {
                    return None;
                }
            }
            Change::ContainerExcluded(_) => {}
        }
    }
    Some(steps)
}

/// The weight the config file gives a server: a draining one is rendered
/// with weight 0, so a reload keeps it out of rotation.
fn configured_weight(server: &Server) -> u16 {
    if server.state == ServerState::Drain {
        0
    } else {
        server.weight
    }
}

fn state_word(state: ServerState) -> &'static str {
    match state {
        ServerState::Ready => "ready",
        ServerState::Drain => "drain",
        ServerState::Maint => "maint",
    }
}

const BUSY_RETRY_FOR: Duration = Duration::from_secs(3);

/// Runs the steps in order; the first refusal is returned (a reload follows).
pub async fn run(admin_socket: &Path, steps: &[Step]) -> Result<(), String> {
    for step in steps {
        let deadline = tokio::time::Instant::now() + BUSY_RETRY_FOR;
        loop {
            match socket::command(admin_socket, &step.command).await {
                Ok(answer) if accepted(&answer) => break,
                Ok(answer) if step.retry_while_busy && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(command = %step.command, answer = answer.trim(), "server busy; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(answer) => return Err(format!("{:?}: {}", step.command, answer.trim())),
                Err(error) => return Err(format!("{:?}: {error}", step.command)),
            }
        }
    }
    Ok(())
}

/// HAProxy answers state and weight changes with nothing, and `add`/`del
/// server` with a confirmation sentence.
fn accepted(answer: &str) -> bool {
    let answer = answer.trim();
    answer.is_empty() || answer.starts_with("New server registered") || answer.starts_with("Server deleted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{facts, scope};
    use crate::model::{ContainerUpdate, Inventory};

    fn commands(steps: Option<Vec<Step>>) -> Vec<String> {
        steps.expect("runtime plan").into_iter().map(|s| s.command).collect()
    }

    #[test]
    fn scale_up_and_down_needs_no_reload() {
        let mut inv = Inventory::default();
        inv.apply(ContainerUpdate::Upsert(facts("a", "web", "10.0.0.2")));
        let one = inv.snapshot(&scope());
        inv.apply(ContainerUpdate::Upsert(facts("bb", "web", "10.0.0.3")));
        let two = inv.snapshot(&scope());
        assert_eq!(
            commands(plan(&one, &two)),
            [
                "add server web/app-bb-bb000000 10.0.0.3:8080 weight 100 pool-max-conn -1 pool-purge-delay 5s check inter 500ms \
                 fall 3 rise 1 fastinter 100ms",
                "enable health web/app-bb-bb000000",
                "set server web/app-bb-bb000000 state ready",
            ]
        );
        let steps = plan(&two, &one).unwrap();
        assert_eq!(steps[0].command, "set server web/app-bb-bb000000 state maint");
        assert!(steps[1].retry_while_busy && steps[1].command == "del server web/app-bb-bb000000");
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
            commands(plan(&ready, &drained)),
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

    #[test]
    fn answers() {
        assert!(accepted(""));
        assert!(accepted("New server registered.\n"));
        assert!(accepted("Server deleted.\n"));
        assert!(!accepted(
            "Server still has connections attached to it, cannot remove it.\n"
        ));
    }
}
