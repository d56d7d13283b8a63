//! HAProxy runtime API commands, typed: each one's `Display` is the exact
//! admin-socket line.

use std::fmt;
use std::net::IpAddr;

use crate::model::ServerState;

/// A server of a backend: `backend/server` on the socket. Backend = service
/// name and server = server name, as the default template renders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub backend: String,
    pub server: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.backend, self.server)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// HAProxy 2.6 gives a dynamic server no `default-server` settings, so
    /// the line carries all of them; it is born in maintenance.
    AddServer {
        target: Target,
        address: IpAddr,
        port: u16,
        weight: u16,
        maxconn: Option<u32>,
        check_interval_ms: u64,
    },
    EnableHealth(Target),
    SetState(Target, ServerState),
    SetWeight(Target, u16),
    SetAddr {
        target: Target,
        address: IpAddr,
        port: u16,
    },
    DelServer(Target),
}

/// HAProxy 2.6 gives a dynamic server no pool of idle connections (a limit
/// of 0, purged at once), so every request to it opened a new connection:
/// 200 keep-alive requests made 200 connects, against 1 for a server from the
/// config. These are the values a config server gets by default.
const IDLE_POOL: &str = "pool-max-conn -1 pool-purge-delay 5s";

impl Command {
    /// `del server` is refused while sessions are attached: worth retrying
    /// for a moment until the server's last sessions are gone.
    pub fn retry_while_busy(&self) -> bool {
        matches!(self, Command::DelServer(_))
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::AddServer {
                target,
                address,
                port,
                weight,
                maxconn,
                check_interval_ms,
            } => {
                write!(f, "add server {target} {address}:{port} weight {weight}")?;
                if let Some(maxconn) = maxconn {
                    write!(f, " maxconn {maxconn}")?;
                }
                write!(
                    f,
                    " {IDLE_POOL} check inter {check_interval_ms}ms fall 3 rise 1 fastinter 100ms"
                )
            }
            Command::EnableHealth(target) => write!(f, "enable health {target}"),
            Command::SetState(target, state) => write!(f, "set server {target} state {}", state_word(*state)),
            Command::SetWeight(target, weight) => write!(f, "set server {target} weight {weight}"),
            Command::SetAddr { target, address, port } => {
                write!(f, "set server {target} addr {address} port {port}")
            }
            Command::DelServer(target) => write!(f, "del server {target}"),
        }
    }
}

fn state_word(state: ServerState) -> &'static str {
    match state {
        ServerState::Ready => "ready",
        ServerState::Drain => "drain",
        ServerState::Maint => "maint",
    }
}
