//! The `/status` document: what teal sees and did. Read back by `teal status`
//! and `teal rollout`, so it is both serialized and parsed here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::held::HeldRequests;
use crate::isolate::Refusals;
use crate::model::labels::{Mode, Slot};
use crate::model::{Canary, Controls, ServerState, Snapshot, StickyCanary};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DockerStatus {
    pub connected: bool,
    /// Why the last session ended, while disconnected.
    pub error: Option<String>,
    /// How teal follows the swarm; `None` unless the daemon is a manager.
    #[serde(default)]
    pub swarm: Option<SwarmStatus>,
}

/// The Swarm side, on a manager.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmStatus {
    /// The manager teal reads the swarm from, as `docker node ls` names it.
    pub node: String,
    /// The last listing of nodes, services and tasks worked. While not,
    /// HAProxy keeps what was listed last.
    pub following: bool,
    /// Why the last listing failed, while not following: no answer in time
    /// (the managers are electing a leader), no leader (too few managers)...
    pub error: Option<String>,
    /// When the last listing that worked ended (RFC 3339, UTC).
    pub listed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyRecord {
    /// RFC 3339, UTC.
    pub time: String,
    pub ok: bool,
    /// reloaded, started, runtime, written (when ok).
    pub outcome: Option<String>,
    pub error: Option<String>,
    /// The error is a refusal teal left out alone (a service, or an edit of
    /// the template or certificates): every other change reached HAProxy.
    #[serde(default)]
    pub left_out: bool,
    /// The maintenance and pauses in the config HAProxy last loaded (by a
    /// reload or start), by service: what `teal maintenance` and `teal
    /// pause` wait for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub controls: BTreeMap<String, Controls>,
    /// The canary header rules in that config, by service: what `teal
    /// rollout --canary-header` waits for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sticky_canaries: BTreeMap<String, StickyCanary>,
}

/// The HAProxy master of `--reload supervise`, as teal watches it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HaproxyProcess {
    /// The master's pid while it runs.
    pub pid: Option<u32>,
    /// Started by an earlier teal and found running by this one.
    pub adopted: bool,
    pub running: bool,
    /// Times the master ended without teal asking (a crash, a kill, a
    /// start that failed).
    pub exits: u64,
    /// Times teal started it again after an exit.
    pub restarts: u64,
    pub last_exit: Option<HaproxyExit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaproxyExit {
    /// RFC 3339, UTC.
    pub time: String,
    /// How it ended: `exit code 1`, `killed by SIGKILL`, ...
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub name: String,
    pub container_id: String,
    pub container_name: String,
    pub image: String,
    pub address: String,
    pub port: u16,
    pub weight: u16,
    /// What teal wants.
    pub state: ServerState,
    pub reason: Option<String>,
    pub slot: Option<Slot>,
    /// Out of rotation by `teal drain` (or `teal rollout`), until the
    /// container is gone.
    #[serde(default)]
    pub drained: bool,
    /// The Swarm node a task runs on; `None` for a plain container.
    #[serde(default)]
    pub node: Option<String>,
    /// `None` when HAProxy does not (yet) know the server.
    pub haproxy: Option<HaproxyState>,
    /// Requests in flight on it in HAProxy (current sessions plus queued);
    /// `None` when HAProxy does not answer or know the server.
    #[serde(default)]
    pub in_flight: Option<u64>,
    /// Its counters in HAProxy's running worker (since the worker started
    /// or the server was added); `None` when HAProxy does not answer or
    /// know the server.
    #[serde(default)]
    pub counters: Option<super::ServerCounters>,
}

impl ServerStatus {
    /// Teal routes it and HAProxy says UP (DRAIN for one whose label
    /// weight is 0: see [`parse_servers_state`]).
    pub fn is_up(&self) -> bool {
        let up = match self.haproxy {
            Some(HaproxyState::Up) => true,
            Some(HaproxyState::Drain) => self.weight == 0,
            _ => false,
        };
        self.state == ServerState::Ready && up
    }
}

/// What HAProxy reports of a server, in its own words (`UP`, `DOWN`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HaproxyState {
    Up,
    Down,
    /// Put in maintenance (by teal, or an operator).
    Maint,
    Drain,
    /// Checked, not yet UP (`rise` not reached).
    Starting,
    /// Going DOWN (`fall` not reached).
    Stopping,
}

impl fmt::Display for HaproxyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HaproxyState::Up => "UP",
            HaproxyState::Down => "DOWN",
            HaproxyState::Maint => "MAINT",
            HaproxyState::Drain => "DRAIN",
            HaproxyState::Starting => "STARTING",
            HaproxyState::Stopping => "STOPPING",
        })
    }
}

impl FromStr for HaproxyState {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "UP" => Ok(HaproxyState::Up),
            "DOWN" => Ok(HaproxyState::Down),
            "MAINT" => Ok(HaproxyState::Maint),
            "DRAIN" => Ok(HaproxyState::Drain),
            "STARTING" => Ok(HaproxyState::Starting),
            "STOPPING" => Ok(HaproxyState::Stopping),
            _ => Err(format!(
                "{value:?} is not an HAProxy server state (UP, DOWN, MAINT, DRAIN, STARTING, STOPPING)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub mode: Mode,
    pub hosts: Vec<String>,
    pub path: Option<String>,
    pub listen: Option<u16>,
    /// Blue/green: the slot the live frontend serves (on both backends of
    /// a service with slot labels), `None` without slots.
    pub live_slot: Option<Slot>,
    /// Set on a `<service>_preview` backend: the service it previews.
    pub preview_of: Option<String>,
    pub servers: Vec<ServerStatus>,
    /// Requests held while no server was ready (http services, as HAProxy's
    /// running worker counts them); `None` when HAProxy does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldRequests>,
    /// `teal maintenance` and `teal pause`: `maintenance` (`message`,
    /// `since`) and `pause` (`until`), each left out when not set.
    #[serde(default)]
    pub controls: Controls,
    /// `teal rollout --canary` under way: the new containers' share
    /// (`new_percent`), which the servers' `weight`s give them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExcludedStatus {
    pub container_id: String,
    pub container_name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub docker: DockerStatus,
    pub haproxy_running: bool,
    /// `--reload supervise` only.
    #[serde(default)]
    pub haproxy: Option<HaproxyProcess>,
    pub services: Vec<ServiceStatus>,
    pub excluded: Vec<ExcludedStatus>,
    pub last_reload: Option<ApplyRecord>,
    /// What HAProxy refused (services, certificates, a template edit) and
    /// teal leaves out; the refused services' containers are in `excluded`.
    #[serde(default)]
    pub refused: Refusals,
    /// Every file of `--certs`, then ACME's: one per host name teal keeps
    /// or wants a certificate for.
    #[serde(default)]
    pub certificates: Vec<crate::acme::CertificateStatus>,
    /// The recent deploys (`teal rollout`, `teal switch`), newest first,
    /// from `deploys.json` in the state dir.
    #[serde(default)]
    pub deploys: Vec<crate::deploy::DeployReport>,
}

/// (backend, server) -> HAProxy's state of it.
pub type HaproxyStates = HashMap<(String, String), HaproxyState>;

impl StatusReport {
    pub fn new(
        snapshot: &Snapshot,
        docker: DockerStatus,
        haproxy: Option<&HaproxyStates>,
        last_reload: Option<ApplyRecord>,
    ) -> Self {
        let services = snapshot
            .services
            .iter()
            .map(|service| ServiceStatus {
                name: service.name.to_string(),
                mode: service.mode,
                hosts: service.hosts.iter().map(|h| h.as_str().to_owned()).collect(),
                path: service.path.as_ref().map(|p| p.as_str().to_owned()),
                listen: service.listen,
                live_slot: service.slots.as_ref().map(|s| s.live),
                preview_of: service
                    .slots
                    .as_ref()
                    .and_then(|s| s.preview_of.as_ref())
                    .map(|s| s.to_string()),
                servers: service
                    .servers
                    .iter()
                    .map(|server| ServerStatus {
                        name: server.name.clone(),
                        container_id: server.container_id.0.clone(),
                        container_name: server.container_name.clone(),
                        image: server.image.clone(),
                        address: server.address.to_string(),
                        port: server.port,
                        weight: server.weight,
                        state: server.state,
                        reason: server.reason.clone(),
                        slot: server.slot,
                        drained: server.drained,
                        node: server.node.clone(),
                        haproxy: haproxy
                            .and_then(|states| states.get(&(service.name.to_string(), server.name.clone())))
                            .cloned(),
                        in_flight: None,
                        counters: None,
                    })
                    .collect(),
                held: None,
                controls: service.controls.clone(),
                canary: service.canary.clone(),
            })
            .collect();
        let excluded = snapshot
            .excluded
            .iter()
            .map(|e| ExcludedStatus {
                container_id: e.container_id.0.clone(),
                container_name: e.container_name.clone(),
                reason: e.reason.clone(),
            })
            .collect();
        Self {
            docker,
            haproxy_running: haproxy.is_some(),
            haproxy: None,
            services,
            excluded,
            last_reload,
            refused: Refusals::default(),
            certificates: Vec::new(),
            deploys: Vec::new(),
        }
    }
}

/// Parses `show servers state` (format version 1) into HAProxy's state of
/// each server. Admin flags: 0x23 = forced, inherited or resolution
/// maintenance (0x04 alone only says "disabled in the config" and does not
/// stop traffic); 0x18 = drain. A server UP with weight 0 is draining too,
/// as HAProxy defines drain: that is how a config renders a draining
/// server, so a freshly started HAProxy shows teal's drained servers so.
pub fn parse_servers_state(answer: &str) -> HaproxyStates {
    let mut states = HashMap::new();
    for line in answer.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, backend, _, server, _, op, admin, weight, ..] = fields.as_slice() else {
            continue;
        };
        if *server == super::HOLD_SERVER {
            continue;
        }
        let (Ok(op), Ok(admin), Ok(weight)) = (op.parse::<u32>(), admin.parse::<u32>(), weight.parse::<u32>()) else {
            continue;
        };
        let state = if admin & 0x23 != 0 {
            HaproxyState::Maint
        } else if admin & 0x18 != 0 || (op == 2 && weight == 0) {
            HaproxyState::Drain
        } else {
            match op {
                0 => HaproxyState::Down,
                1 => HaproxyState::Starting,
                2 => HaproxyState::Up,
                _ => HaproxyState::Stopping,
            }
        };
        states.insert((backend.to_string(), server.to_string()), state);
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_haproxy_server_states() {
        let answer = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...\n\
            3 web 1 a-1 10.0.0.2 2 4 100 100 0 6 3 1 6 0 0 0 - 8080 - 0 0 - - 0\n\
            3 web 2 b-2 10.0.0.3 0 5 100 100 0 6 3 1 6 0 0 0 - 8080 - 0 0 - - 0\n\
            3 web 3 c-3 10.0.0.4 2 8 100 100 0 6 3 1 6 0 0 0 - 8080 - 0 0 - - 0\n\
            3 web 4 d-4 10.0.0.5 0 0 100 100 0 6 3 1 6 0 0 0 - 8080 - 0 0 - - 0\n\
            3 web 5 e-5 10.0.0.6 2 0 0 0 0 6 3 1 6 0 0 0 - 8080 - 0 0 - - 0\n\
            3 web 6 teal_hold 127.0.0.1 2 0 1 1 0 6 3 1 6 0 0 0 - 8080 - 0 0 - - 0\n";
        let states = parse_servers_state(answer);
        let get = |s: &str| states[&("web".to_string(), s.to_string())];
        use HaproxyState::{Down, Drain, Maint, Up};
        assert_eq!(
            (get("a-1"), get("b-2"), get("c-3"), get("d-4"), get("e-5")),
            (Up, Maint, Drain, Down, Drain)
        );
        assert!(!states.contains_key(&("web".to_string(), "teal_hold".to_string())));
    }

    #[test]
    fn state_text_is_their_json() {
        use HaproxyState::*;
        for state in [Up, Down, Maint, Drain, Starting, Stopping] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.to_string());
            assert_eq!(state.to_string().parse(), Ok(state));
        }
        for state in [ServerState::Ready, ServerState::Drain, ServerState::Maint] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.to_string());
            assert_eq!(state.to_string().parse(), Ok(state));
        }
    }

    #[test]
    fn reads_back_what_the_server_writes() {
        let json = r#"{"docker": {"connected": true, "error": null}, "haproxy_running": true, "haproxy": null,
            "services": [{"name": "web", "mode": "http", "hosts": [], "path": null, "listen": null,
                "live_slot": "green", "preview_of": null, "servers": [{"name": "a-1", "container_id": "c1",
                "container_name": "a", "image": "app:1", "address": "10.0.0.2", "port": 80, "weight": 100,
                "state": "ready", "reason": null, "slot": "green", "drained": false, "node": "n2", "haproxy": "UP",
                "in_flight": 0, "counters": {"requests": 9, "responses_5xx": 1, "retries": 0, "redispatches": 0,
                "connection_errors": 0, "response_errors": 0, "response_time_ms": 3, "response_time_max_ms": 8}}],
                "controls": {"maintenance": {"message": "back soon", "since": 1700000000}}}],
            "excluded": [], "last_reload": null}"#;
        let report: StatusReport = serde_json::from_str(json).unwrap();
        let server = &report.services[0].servers[0];
        assert!(server.is_up());
        assert_eq!(report.services[0].live_slot, Some(Slot::Green));
        // The typed fields are written back as they were read.
        let again = serde_json::to_value(&report).unwrap();
        let original: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(again["services"], original["services"]);
    }
}
