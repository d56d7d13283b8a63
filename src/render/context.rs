//! The template context: the documented, stable shape templates read
//! (printed by `teal render --context`).

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::acme::{AcmeFiles, FilesError};
use crate::model::labels::{Balance, HealthCheck, HostName, HttpPath, Mode, ServiceName};
use crate::model::{Excluded, Maintenance, Server, Service, SlotRouting, Snapshot, StickyCanary};
use crate::settings::{BindAddr, Settings};
use crate::tls::{self, Certificate, CertsError, RefusedCertificate};

use super::server_options::{config_weight, ServerDefaults};

#[derive(Debug, Clone, Serialize)]
pub struct ContextSettings {
    pub http_bind: BindAddr,
    /// Blue/green preview listener (`--preview-bind`); `None`: no preview frontend.
    pub preview_bind: Option<BindAddr>,
    /// Its HTTPS side (`--preview-https-bind`), with the certificates of `tls`.
    pub preview_https_bind: Option<BindAddr>,
    /// HAProxy's Prometheus exporter (`--haproxy-metrics-bind`); `None`: not served.
    pub haproxy_metrics_bind: Option<BindAddr>,
    /// HAProxy's admin socket: teal's runtime API channel.
    pub admin_socket: String,
    pub server_state_file: String,
    pub label_prefix: String,
    /// TLS termination on the shared frontend; `None` without `--certs`
    /// and `--acme-email`.
    pub tls: Option<TlsSettings>,
    /// Holding requests while a service has no ready server.
    pub hold: HoldSettings,
    /// Where the maintenance pages are, `SERVICE.html` (teal writes them).
    pub maintenance_pages: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldSettings {
    /// The Lua action teal writes in `--state-dir` (`lua-load` it).
    pub script: String,
    /// Where each service's hold listens: a unix socket of HAProxy's own.
    pub sockets: String,
    /// `--hold` in milliseconds: the bound of a service without `teal.hold`.
    pub default_ms: u64,
    /// Requests one service may hold at once; more get the 503 at once.
    pub max_held: u32,
    /// Seconds in the `Retry-After` of the 503 once the hold is over.
    pub retry_after: u32,
    /// Seconds in the `Retry-After` of a maintenance page.
    pub maintenance_retry_after: u32,
    /// How long a request held by `teal pause` may wait for its response
    /// (HAProxy's `timeout server` of 30 s would end it first).
    pub pause_timeout_ms: u64,
}

impl HoldSettings {
    /// The hold script at `script`, `default` for services without `teal.hold`.
    pub fn new(script: &Path, sockets: &Path, default: std::time::Duration) -> Self {
        Self {
            script: script.display().to_string(),
            sockets: sockets.display().to_string(),
            default_ms: default.as_millis() as u64,
            max_held: MAX_HELD_PER_SERVICE,
            retry_after: RETRY_AFTER_SECS,
            maintenance_retry_after: MAINTENANCE_RETRY_AFTER_SECS,
            pause_timeout_ms: (crate::controls::MAX_PAUSE + PAUSE_RESPONSE_TIME).as_millis() as u64,
        }
    }

    /// The hold socket of `service`: named by a digest of the name, so the
    /// path fits a unix socket's 107 bytes whatever the name's length.
    pub fn socket(&self, service: &ServiceName) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(service.as_str().as_bytes());
        let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}/{name}.sock", self.sockets)
    }
}

/// Bounds what a service that never comes back can pile up: held requests
/// are open connections (and a small Lua coroutine each).
pub const MAX_HELD_PER_SERVICE: u32 = 1000;
/// A client told to retry comes back when a deploy has usually finished.
pub const RETRY_AFTER_SECS: u32 = 5;
/// Maintenance lasts longer than a deploy.
pub const MAINTENANCE_RETRY_AFTER_SECS: u32 = 60;
/// What a request released at the end of a pause gets for its response.
const PAUSE_RESPONSE_TIME: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsSettings {
    /// `--https-bind`: the HTTPS side of the shared HTTP frontend.
    pub bind: BindAddr,
    /// There is a certificate to serve (in `certificates`, or ACME's
    /// fallback): the HTTPS port is bound.
    pub listening: bool,
    /// `--certs`: the directory of the certificates; `None` with ACME alone.
    pub dir: Option<String>,
    /// The files in `dir` that HAProxy loads, with a digest each, by name.
    pub certificates: Vec<Certificate>,
    /// The files in `dir` HAProxy would refuse, and why: left out.
    pub refused: Vec<RefusedCertificate>,
    /// The crt-list teal writes in `--state-dir`: `certificates`, in order
    /// (HAProxy picks one by SNI, the first when none matches).
    pub crt_list: String,
    /// The port redirects to HTTPS name in their Location; `None` for 443.
    pub redirect_port: Option<u16>,
    /// `--acme-email`: the files of the certificates teal gets itself; not
    /// listed with digests, as they are loaded through the runtime API.
    pub acme: Option<AcmeFiles>,
    /// `--haproxy`, which checks each certificate.
    #[serde(skip)]
    pub haproxy: std::path::PathBuf,
}

/// Why the TLS settings cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Certs(#[from] CertsError),
    #[error(transparent)]
    Acme(#[from] FilesError),
}

impl ContextSettings {
    /// Reads the `--certs` directory, if any (call again when it changes),
    /// and prepares ACME's files.
    pub fn new(settings: &Settings) -> Result<Self, TlsError> {
        let tls = if settings.tls() {
            let crt_list = settings.state_dir.join("certificates.list");
            let checked = match &settings.certs {
                Some(dir) => tls::load(dir, &settings.haproxy, &crt_list)?,
                None => tls::Checked::default(),
            };
            let acme = match &settings.acme {
                Some(_) => {
                    let files = AcmeFiles::new(&settings.acme_dir());
                    files.prepare(&settings.haproxy)?;
                    Some(files)
                }
                None => None,
            };
            Some(TlsSettings {
                bind: settings.https_bind,
                listening: !checked.certificates.is_empty() || acme.is_some(),
                dir: settings.certs.as_ref().map(|d| d.display().to_string()),
                certificates: checked.certificates,
                refused: checked.refused,
                crt_list: crt_list.display().to_string(),
                redirect_port: Some(settings.https_bind.port).filter(|p| *p != 443),
                acme,
                haproxy: settings.haproxy.clone(),
            })
        } else {
            None
        };
        Ok(Self {
            http_bind: settings.http_bind,
            preview_bind: settings.preview_bind,
            preview_https_bind: settings.preview_https_bind,
            haproxy_metrics_bind: settings.haproxy_metrics_bind,
            admin_socket: settings.admin_socket().display().to_string(),
            server_state_file: settings.server_state_file().display().to_string(),
            label_prefix: settings.label_prefix.clone(),
            tls,
            hold: HoldSettings::new(&settings.hold_script(), &settings.hold_sockets(), settings.hold),
            maintenance_pages: crate::controls::pages_dir(&settings.state_dir).display().to_string(),
        })
    }

    /// The same settings with the `--certs` directory read again (after a
    /// change in it).
    pub fn rescan_certificates(&self) -> Result<Self, CertsError> {
        let mut next = self.clone();
        if let Some(tls) = &mut next.tls {
            if let Some(dir) = &tls.dir {
                let checked = tls::load(Path::new(dir), &tls.haproxy, Path::new(&tls.crt_list))?;
                tls.certificates = checked.certificates;
                tls.refused = checked.refused;
                tls.listening = !tls.certificates.is_empty() || tls.acme.is_some();
            }
        }
        Ok(next)
    }
}

/// A service as the template sees it: the model's fields, with what teal
/// derives for the config.
#[derive(Debug, Clone, Serialize)]
pub struct ContextService<'a> {
    pub name: &'a ServiceName,
    pub mode: Mode,
    pub hosts: &'a [HostName],
    pub path: Option<&'a HttpPath>,
    pub listen: Option<u16>,
    /// The frontend address of a tcp service (`listen` on the HTTP bind's IP).
    /// `None` for a preview backend: it has no frontend of its own.
    pub bind: Option<BindAddr>,
    pub balance: Balance,
    pub health: &'a HealthCheck,
    pub https_redirect: bool,
    pub slots: Option<&'a SlotRouting>,
    /// The options for the backend's `default-server` line, the same that
    /// `add server` sends.
    pub server_defaults: ServerDefaults,
    /// Requests wait while no server is usable (http services, unless
    /// `teal.hold` is 0 and no pause is on); `None`: a 503 at once.
    pub hold: Option<ContextHold>,
    /// `teal maintenance`: every request gets the page
    /// `{{settings.maintenance_pages}}/{{name}}.html`.
    pub maintenance: Option<&'a Maintenance>,
    /// `teal rollout --canary-header`: a request carrying `header` goes to
    /// one of `servers` (the new ones, by name).
    pub sticky_canary: Option<StickyCanary>,
    pub servers: Vec<ContextServer<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContextHold {
    /// How long a request waits for a usable server: `teal.hold`, else `--hold`.
    pub ms: u64,
    /// The unix socket of the service's hold frontend (its `teal_hold` server).
    pub socket: String,
    /// `teal pause`: every request waits until then (Unix time); 0 without a pause.
    pub paused_until_secs: u64,
    pub paused_until_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContextServer<'a> {
    #[serde(flatten)]
    pub server: &'a Server,
    /// The weight for the config line: 0 while draining.
    pub config_weight: u16,
}

impl<'a> ContextService<'a> {
    pub(super) fn new(service: &'a Service, settings: &ContextSettings) -> Self {
        Self {
            name: &service.name,
            mode: service.mode,
            hosts: &service.hosts,
            path: service.path.as_ref(),
            listen: service.listen,
            bind: (service.mode == Mode::Tcp && !is_preview(service))
                .then_some(service.listen)
                .flatten()
                .map(|port| settings.http_bind.with_port(port)),
            balance: service.balance,
            health: &service.health,
            https_redirect: service.https_redirect,
            slots: service.slots.as_ref(),
            server_defaults: ServerDefaults::of(service),
            hold: hold(service, &settings.hold),
            maintenance: service.controls.maintenance.as_ref(),
            sticky_canary: service.sticky_canary(),
            servers: service
                .servers
                .iter()
                .map(|server| ContextServer {
                    server,
                    config_weight: config_weight(server),
                })
                .collect(),
        }
    }
}

fn hold(service: &Service, settings: &HoldSettings) -> Option<ContextHold> {
    let ms = service.hold.map_or(settings.default_ms, |hold| hold.as_millis() as u64);
    let paused_until_secs = service.controls.pause.map_or(0, |pause| pause.until);
    (service.mode == Mode::Http && (ms > 0 || paused_until_secs > 0)).then(|| ContextHold {
        ms,
        socket: settings.socket(&service.name),
        paused_until_secs,
        paused_until_ms: paused_until_secs * 1000,
    })
}

/// One `use_backend` rule of the HTTP frontend.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRoute<'a> {
    pub service: &'a ServiceName,
    pub hosts: &'a [HostName],
    /// Matches this path and everything under it; `None` for any path.
    pub path: Option<&'a str>,
    /// Plain-HTTP requests on this route are redirected to HTTPS; only
    /// `true` when teal terminates TLS.
    pub https_redirect: bool,
    /// `teal.tls=acme` with ACME on: the redirect waits until the host's
    /// certificate is served (its name is in `settings.tls.acme.served`).
    pub acme: bool,
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
    /// The default service redirects plain-HTTP requests to HTTPS.
    pub default_https_redirect: bool,
    /// Blue/green: the routes of the preview listener, to the
    /// `<service>_preview` backends, ordered like `http_routes`.
    pub preview_routes: Vec<HttpRoute<'a>>,
    pub preview_default_service: Option<&'a ServiceName>,
    pub excluded: &'a [Excluded],
}

impl<'a> Context<'a> {
    pub fn new(settings: &'a ContextSettings, snapshot: &'a Snapshot) -> Self {
        Self {
            services: snapshot
                .services
                .iter()
                .map(|service| ContextService::new(service, settings))
                .collect(),
            ..Self::frame(settings, snapshot)
        }
    }

    /// Everything but `services`, which is left empty.
    pub(super) fn frame(settings: &'a ContextSettings, snapshot: &'a Snapshot) -> Self {
        let live = snapshot.services.iter().map(Arc::as_ref).filter(|s| !is_preview(s));
        let preview = snapshot.services.iter().map(Arc::as_ref).filter(|s| is_preview(s));
        // Redirect only to an HTTPS listener that has a certificate for the name.
        let https = Https {
            certificates: settings.tls.as_ref().is_some_and(|t| !t.certificates.is_empty()),
            acme: settings.tls.as_ref().is_some_and(|t| t.acme.is_some()),
        };
        let (http_routes, default_service) = routes(live, https);
        // The preview listener is plain HTTP and never redirects.
        let (preview_routes, preview_default_service) = routes(preview, Https::default());
        // The default service has no host, so no ACME certificate.
        let default_https_redirect = https.certificates && default_service.is_some_and(|s| s.https_redirect);
        Self {
            settings,
            services: Vec::new(),
            http_routes,
            default_service: default_service.map(|s| &s.name),
            default_https_redirect,
            preview_routes,
            preview_default_service: preview_default_service.map(|s| &s.name),
            excluded: &snapshot.excluded,
        }
    }
}

fn is_preview(service: &Service) -> bool {
    service.slots.as_ref().is_some_and(|s| s.preview_of.is_some())
}

/// What HTTPS a frontend can redirect to.
#[derive(Debug, Clone, Copy, Default)]
struct Https {
    /// `--certs` has certificates: any name may be redirected.
    certificates: bool,
    /// ACME is on: a `teal.tls=acme` name may be, once its certificate is served.
    acme: bool,
}

/// The routes of one HTTP frontend, and its default service.
fn routes<'a>(services: impl Iterator<Item = &'a Service>, https: Https) -> (Vec<HttpRoute<'a>>, Option<&'a Service>) {
    let http: Vec<&Service> = services.filter(|s| s.mode == Mode::Http).collect();
    let mut routes: Vec<HttpRoute> = http
        .iter()
        .map(|s| HttpRoute {
            service: &s.name,
            hosts: &s.hosts,
            path: s.path.as_ref().map(|p| p.as_str()).filter(|p| *p != "/"),
            https_redirect: s.https_redirect && (https.certificates || (s.acme && https.acme)),
            acme: s.acme && https.acme,
        })
        .filter(|r| !r.hosts.is_empty() || r.path.is_some())
        .collect();
    routes.sort_by_key(|r| {
        (
            r.hosts.is_empty(),
            r.path.is_none(),
            std::cmp::Reverse(r.path.map_or(0, str::len)),
            r.service,
        )
    });
    let default_service = http
        .iter()
        .find(|s| s.hosts.is_empty() && s.path.as_ref().is_none_or(|p| p.as_str() == "/"))
        .copied();
    (routes, default_service)
}
