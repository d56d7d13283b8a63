//! HAProxy runtime API commands, typed: each one's `Display` is the exact
//! admin-socket line.

use std::fmt;
use std::net::IpAddr;

use crate::model::ServerState;
use crate::render::ServerDefaults;

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
    /// the line carries them ([`ServerDefaults`]); it is born in maintenance.
    AddServer {
        target: Target,
        address: IpAddr,
        port: u16,
        weight: u16,
        maxconn: Option<u32>,
        defaults: ServerDefaults,
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

impl Command {
    /// `del server` is refused while sessions are attached: worth retrying
    /// for a moment until the server's last sessions are gone.
    pub fn retry_while_busy(&self) -> bool {
        matches!(self, Command::DelServer(_))
    }

    /// The server it changes.
    pub fn target(&self) -> &Target {
        match self {
            Command::AddServer { target, .. }
            | Command::EnableHealth(target)
            | Command::SetState(target, _)
            | Command::SetWeight(target, _)
            | Command::SetAddr { target, .. }
            | Command::DelServer(target) => target,
        }
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
                defaults,
            } => {
                write!(f, "add server {target} {address}:{port} weight {weight}")?;
                if let Some(maxconn) = maxconn {
                    write!(f, " maxconn {maxconn}")?;
                }
                write!(f, " {defaults}")
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
