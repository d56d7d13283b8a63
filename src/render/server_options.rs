//! The server options both a rendered config and the runtime API express:
//! one source, so a server added by `add server` is the server the next
//! reload loads.

use std::fmt;

use serde::Serialize;

use crate::model::{Server, ServerState, Service};

/// What every server of a service carries: health checks every
/// `teal.health.interval`, three failures in a row (100 ms apart after the
/// first) to go DOWN, one success to come back; and HAProxy's idle pool.
///
/// On `default-server` in the template (`{{server_defaults}}`: once per
/// backend, not on each of 10,000 server lines); HAProxy gives a server
/// added at runtime none of that, so `add server` spells it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerDefaults {
    pub check_interval_ms: u64,
}

impl ServerDefaults {
    pub fn of(service: &Service) -> Self {
        Self {
            check_interval_ms: service.health.interval_ms,
        }
    }
}

impl fmt::Display for ServerDefaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // HAProxy 2.6 gives a dynamic server no pool of idle connections (a
        // limit of 0, purged at once), so every request to it opened a new
        // connection: 200 keep-alive requests made 200 connects, against 1
        // for a server from the config. These are a config server's defaults.
        write!(
            f,
            "check inter {}ms fall 3 rise 1 fastinter 100ms pool-max-conn -1 pool-purge-delay 5s",
            self.check_interval_ms
        )
    }
}

impl Serialize for ServerDefaults {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The weight a config line gives `server`: a draining one gets 0, so a
/// reload keeps it out of rotation.
pub fn config_weight(server: &Server) -> u16 {
    if server.state == ServerState::Drain {
        0
    } else {
        server.weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_defaults_as_haproxy_reads_them() {
        assert_eq!(
            ServerDefaults { check_interval_ms: 500 }.to_string(),
            "check inter 500ms fall 3 rise 1 fastinter 100ms pool-max-conn -1 pool-purge-delay 5s"
        );
    }

    #[test]
    fn render_context_shows_them_per_service_and_server() {
        use crate::reconcile::tests::{context_settings, snapshot};
        let mut snapshot = snapshot(&[("a", "web"), ("bb", "web")]);
        std::sync::Arc::make_mut(&mut snapshot.services[0]).servers[1].state = ServerState::Drain;
        let settings = context_settings();
        let json = serde_json::to_value(crate::render::Context::new(&settings, &snapshot)).unwrap();
        let web = &json["services"][0];
        assert_eq!(
            web["server_defaults"],
            ServerDefaults::of(&snapshot.services[0]).to_string()
        );
        assert_eq!(web["servers"][0]["config_weight"], 100);
        assert_eq!(web["servers"][1]["config_weight"], 0);
        assert_eq!(web["servers"][1]["weight"], 100);
    }
}
