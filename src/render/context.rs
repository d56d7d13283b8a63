//! The template context: the documented, stable shape templates read
//! (printed by `teal render --context`).

use serde::Serialize;

use crate::model::labels::{HostName, Mode, ServiceName};
use crate::model::{Excluded, Service, Snapshot};
use crate::settings::{BindAddr, Settings};

#[derive(Debug, Clone, Serialize)]
pub struct ContextSettings {
    pub http_bind: BindAddr,
    /// HAProxy's admin socket: teal's runtime API channel.
    pub admin_socket: String,
    pub server_state_file: String,
    pub label_prefix: String,
}

impl ContextSettings {
    pub fn new(settings: &Settings) -> Self {
        Self {
            http_bind: settings.http_bind,
            admin_socket: settings.admin_socket().display().to_string(),
            server_state_file: settings.server_state_file().display().to_string(),
            label_prefix: settings.label_prefix.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ContextService<'a> {
    #[serde(flatten)]
    pub service: &'a Service,
    /// The frontend address of a tcp service (`listen` on the HTTP bind's IP).
    pub bind: Option<BindAddr>,
}

/// One `use_backend` rule of the HTTP frontend.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRoute<'a> {
    pub service: &'a ServiceName,
    pub hosts: &'a [HostName],
    /// Matches this path and everything under it; `None` for any path.
    pub path: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Context<'a> {
    pub settings: &'a ContextSettings,
    pub services: Vec<ContextService<'a>>,
    /// Most specific first: host and path, then host, then path; longer paths first.
    pub http_routes: Vec<HttpRoute<'a>>,
    /// The http service with neither host nor path: it gets every request no
    /// route matches. With several such services the first by name wins.
    pub default_service: Option<&'a ServiceName>,
    pub excluded: &'a [Excluded],
}

impl<'a> Context<'a> {
    pub fn new(settings: &'a ContextSettings, snapshot: &'a Snapshot) -> Self {
        let services = snapshot
            .services
            .iter()
            .map(|service| ContextService {
                service,
                bind: (service.mode == Mode::Tcp)
                    .then_some(service.listen)
                    .flatten()
                    .map(|port| settings.http_bind.with_port(port)),
            })
            .collect();
        let http = || snapshot.services.iter().filter(|s| s.mode == Mode::Http);
        let mut http_routes: Vec<HttpRoute> = http()
            .map(|s| HttpRoute {
                service: &s.name,
                hosts: &s.hosts,
                path: s.path.as_ref().map(|p| p.as_str()).filter(|p| *p != "/"),
            })
            .filter(|r| !r.hosts.is_empty() || r.path.is_some())
            .collect();
        http_routes.sort_by_key(|r| {
            (
                r.hosts.is_empty(),
                r.path.is_none(),
                std::cmp::Reverse(r.path.map_or(0, str::len)),
                r.service,
            )
        });
        let default_service = http()
            .find(|s| s.hosts.is_empty() && s.path.as_ref().is_none_or(|p| p.as_str() == "/"))
            .map(|s| &s.name);
        Self {
            settings,
            services,
            http_routes,
            default_service,
            excluded: &snapshot.excluded,
        }
    }
}
