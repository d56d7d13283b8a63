//! Container labels -> [`ServiceLabels`], a trusted type.
//!
//! Every value gets a strict grammar here, so nothing a label says can reach
//! haproxy.cfg as raw text: a value is either parsed into a typed value or
//! the whole container is left out with a [`LabelError`] naming the label.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;

use super::Labels;

/// Why a container's labels were refused. Shown in logs and `/status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label {key}={value:?}: {reason}")]
pub struct LabelError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

/// A backend name: `teal.service`, also used as HAProxy's backend name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ServiceName(String);

impl ServiceName {
    pub fn parse(value: &str) -> Result<Self, String> {
        if !is_name(value, 64) {
            Err("must be 1-64 characters of a-z, A-Z, 0-9, '_', '.', '-', starting with a letter or digit".into())
        } else if value.to_ascii_lowercase().starts_with(RESERVED_PREFIX) {
            // The template's own frontends and backends (teal_http,
            // teal_not_found...) would clash with a backend of that name.
            Err(format!(
                "names starting with {RESERVED_PREFIX:?} are reserved for teal's own sections"
            ))
        } else {
            Ok(Self(value.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Section names of the shipped template start with this; services may not.
pub const RESERVED_PREFIX: &str = "teal_";

/// A DNS host name matched against the request's Host header (lower case).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct HostName(String);

impl HostName {
    pub fn parse(value: &str) -> Result<Self, String> {
        let host = value.trim().to_ascii_lowercase();
        let labels_ok = host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if host.is_empty() || host.len() > 253 || !labels_ok {
            return Err(format!(
                "{host:?} is not a host name (letters, digits, '-' and '.' only; no port, scheme or wildcard)"
            ));
        }
        Ok(Self(host))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A URL path prefix: starts with '/', only unreserved characters, '/' and
/// percent escapes. A trailing '/' is dropped so `/api/` and `/api` match alike.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct HttpPath(String);

impl HttpPath {
    pub fn parse(value: &str) -> Result<Self, String> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~/%".contains(&b);
        if !value.starts_with('/') || value.len() > 1024 || !value.bytes().all(allowed) {
            return Err("must start with '/' and hold only letters, digits, '-', '.', '_', '~', '/' and '%'".into());
        }
        let trimmed = value.trim_end_matches('/');
        Ok(Self(if trimmed.is_empty() { "/".into() } else { trimmed.into() }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Http,
    Tcp,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
        })
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "http" => Ok(Mode::Http),
            "tcp" => Ok(Mode::Tcp),
            _ => Err("must be http or tcp".into()),
        }
    }
}

/// Only HAProxy's dynamic algorithms: they accept servers added at runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    Roundrobin,
    Leastconn,
    Random,
    First,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    Blue,
    Green,
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        })
    }
}

impl FromStr for Slot {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "blue" => Ok(Slot::Blue),
            "green" => Ok(Slot::Green),
            _ => Err("must be blue or green".into()),
        }
    }
}

/// HAProxy's active check of a server: HTTP GET of `path`, else a TCP connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct HealthCheck {
    pub path: Option<HttpPath>,
    pub interval_ms: u64,
}

/// Everything teal reads from one container's labels, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceLabels {
    pub service: ServiceName,
    pub port: Option<u16>,
    pub network: Option<String>,
    pub hosts: Vec<HostName>,
    pub path: Option<HttpPath>,
    pub mode: Mode,
    /// Frontend port of a tcp service.
    pub listen: Option<u16>,
    pub health: HealthCheck,
    pub weight: u16,
    pub balance: Balance,
    pub maxconn: Option<u32>,
    /// How long a request waits while no server is ready (`0`: not at all);
    /// `None`: `--hold`.
    pub hold: Option<Duration>,
    pub slot: Option<Slot>,
    /// Plain-HTTP requests for this service are redirected to HTTPS (only
    /// when teal terminates TLS, `--certs` or `--acme-email`).
    pub https_redirect: bool,
    /// `teal.tls=acme`: teal gets a certificate for each of `hosts` from
    /// the ACME server (`--acme-email`).
    pub acme: bool,
}

pub const DEFAULT_WEIGHT: u16 = 100;
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// Parses the labels under `prefix`. `Ok(None)`: not a teal container (no
/// `service` label, or `enable=false`).
pub fn parse(prefix: &str, labels: &Labels) -> Result<Option<ServiceLabels>, LabelError> {
    let reader = Reader { prefix, labels };
    let Some(service) = reader.get("service", ServiceName::parse)? else {
        return Ok(None);
    };
    if !reader.get("enable", parse_bool)?.unwrap_or(true) {
        return Ok(None);
    }
    let mode = reader.get("mode", str::parse)?.unwrap_or(Mode::Http);
    let listen = reader.get("listen", parse_port)?;
    if mode == Mode::Tcp && listen.is_none() {
        return Err(reader.error(
            "mode",
            "tcp",
            format!("a tcp service needs {}.listen, the frontend port", prefix),
        ));
    }
    let acme = reader.get("tls", parse_tls)?.is_some();
    let hosts = reader.get("host", parse_hosts)?.unwrap_or_default();
    if acme && (mode == Mode::Tcp || hosts.is_empty()) {
        return Err(reader.error(
            "tls",
            "acme",
            format!("certificates are for the {prefix}.host names of an http service: set {prefix}.host"),
        ));
    }
    Ok(Some(ServiceLabels {
        service,
        port: reader.get("port", parse_port)?,
        network: reader.get("network", parse_network)?,
        hosts,
        path: reader.get("path", HttpPath::parse)?,
        mode,
        listen,
        health: HealthCheck {
            path: reader.get("health.path", HttpPath::parse)?,
            interval_ms: reader
                .get("health.interval", parse_check_interval)?
                .unwrap_or(DEFAULT_HEALTH_INTERVAL)
                .as_millis() as u64,
        },
        weight: reader.get("weight", parse_weight)?.unwrap_or(DEFAULT_WEIGHT),
        balance: reader.get("balance", parse_balance)?.unwrap_or(Balance::Roundrobin),
        maxconn: reader.get("maxconn", parse_maxconn)?,
        hold: reader.get("hold", parse_hold)?,
        slot: reader.get("slot", str::parse)?,
        https_redirect: reader.get("https-redirect", parse_bool)?.unwrap_or(false),
        acme,
    }))
}

struct Reader<'a> {
    prefix: &'a str,
    labels: &'a Labels,
}

impl Reader<'_> {
    fn get<T>(&self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, LabelError> {
        let Some(value) = self.labels.get(&format!("{}.{key}", self.prefix)) else {
            return Ok(None);
        };
        if value.chars().any(char::is_control) {
            return Err(self.error(key, value, "contains a control character (newline, tab...)".into()));
        }
        parse(value.trim())
            .map(Some)
            .map_err(|reason| self.error(key, value, reason))
    }

    fn error(&self, key: &str, value: &str, reason: String) -> LabelError {
        LabelError {
            key: format!("{}.{key}", self.prefix),
            value: value.to_owned(),
            reason,
        }
    }
}

fn is_name(value: &str, max: usize) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

/// `teal.tls`: only `acme` (certificates from `--certs` need no label).
fn parse_tls(value: &str) -> Result<(), String> {
    match value {
        "acme" => Ok(()),
        _ => Err("must be acme (a certificate from the ACME server for each host name)".into()),
    }
}

fn parse_port(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("not a port number (1-65535)".into()),
    }
}

fn parse_network(value: &str) -> Result<String, String> {
    if is_name(value, 128) {
        Ok(value.to_owned())
    } else {
        Err("not a Docker network name".into())
    }
}

/// The most names one `teal.host` may list. HAProxy 2.6 reads at most 64
/// words of a config line (it refuses a 65th: "too many words"), and the
/// default template matches a service's hosts on one line of 5 words plus
/// one per name: `acl routeN_host var(txn.host) -m str NAME...`.
pub const MAX_HOSTS: usize = 59;

fn parse_hosts(value: &str) -> Result<Vec<HostName>, String> {
    let mut hosts = value.split(',').map(HostName::parse).collect::<Result<Vec<_>, _>>()?;
    hosts.sort();
    hosts.dedup();
    if hosts.len() > MAX_HOSTS {
        return Err(format!(
            "{} host names; at most {MAX_HOSTS} (HAProxy reads at most 64 words of a config line); split the names between services",
            hosts.len()
        ));
    }
    Ok(hosts)
}

fn parse_check_interval(value: &str) -> Result<Duration, String> {
    let interval = parse_duration(value)?;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&interval) {
        return Err("must be between 100ms and 1h".into());
    }
    Ok(interval)
}

/// Longer than 30 s would outlast HAProxy's `timeout client` and the
/// `hard-stop-after` that ends an old worker still holding requests.
pub const MAX_HOLD: Duration = Duration::from_secs(30);

pub fn parse_hold(value: &str) -> Result<Duration, String> {
    let hold = parse_duration(value)?;
    if hold > MAX_HOLD {
        return Err("must be at most 30s (0 turns holding off)".into());
    }
    Ok(hold)
}

fn parse_weight(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(weight) if weight <= 256 => Ok(weight),
        _ => Err("must be a whole number from 0 to 256".into()),
    }
}

fn parse_balance(value: &str) -> Result<Balance, String> {
    match value {
        "roundrobin" => Ok(Balance::Roundrobin),
        "leastconn" => Ok(Balance::Leastconn),
        "random" => Ok(Balance::Random),
        "first" => Ok(Balance::First),
        _ => Err("must be one of roundrobin, leastconn, random, first".into()),
    }
}

fn parse_maxconn(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(maxconn) if (1..=1_000_000).contains(&maxconn) => Ok(maxconn),
        _ => Err("must be a whole number from 1 to 1000000".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().copied().collect()
    }

    #[test]
    fn no_service_label_is_not_ours() {
        assert_eq!(parse("teal", &labels(&[("teal.port", "80")])), Ok(None));
    }

    #[test]
    fn enable_false_excludes() {
        let l = labels(&[("teal.service", "web"), ("teal.enable", "false")]);
        assert_eq!(parse("teal", &l), Ok(None));
    }

    #[test]
    fn defaults() {
        let parsed = parse("teal", &labels(&[("teal.service", "web")])).unwrap().unwrap();
        assert_eq!(parsed.mode, Mode::Http);
        assert_eq!(parsed.weight, DEFAULT_WEIGHT);
        assert_eq!(parsed.health.interval_ms, 500);
        assert_eq!(parsed.balance, Balance::Roundrobin);
        assert!(parsed.hosts.is_empty() && parsed.port.is_none());
    }

    #[test]
    fn prefix_changes_every_key() {
        let l = labels(&[("t1.service", "web"), ("t1.port", "8080"), ("teal.service", "other")]);
        let parsed = parse("t1", &l).unwrap().unwrap();
        assert_eq!(parsed.service.as_str(), "web");
        assert_eq!(parsed.port, Some(8080));
    }

    #[test]
    fn every_field_parses() {
        let l = labels(&[
            ("teal.service", "api.v2"),
            ("teal.host", "Example.com, www.example.com"),
            ("teal.path", "/api/"),
            ("teal.health.path", "/healthz"),
            ("teal.health.interval", "2s"),
            ("teal.weight", "0"),
            ("teal.balance", "leastconn"),
            ("teal.maxconn", "50"),
            ("teal.slot", "green"),
            ("teal.hold", "20s"),
            ("teal.network", "front_net"),
            ("teal.https-redirect", "true"),
            ("teal.tls", "acme"),
        ]);
        let parsed = parse("teal", &l).unwrap().unwrap();
        let hosts: Vec<_> = parsed.hosts.iter().map(|h| h.0.as_str()).collect();
        assert_eq!(hosts, ["example.com", "www.example.com"]);
        assert_eq!(parsed.path.unwrap().as_str(), "/api");
        assert_eq!(parsed.health.interval_ms, 2000);
        assert_eq!((parsed.weight, parsed.maxconn), (0, Some(50)));
        assert_eq!(parsed.slot, Some(Slot::Green));
        assert!(parsed.https_redirect && parsed.acme);
        assert_eq!(parsed.hold, Some(Duration::from_secs(20)));
    }

    #[test]
    fn hold_is_a_bounded_duration_and_0_is_off() {
        let hold = |value: &str| {
            parse("teal", &labels(&[("teal.service", "web"), ("teal.hold", value)])).map(|l| l.unwrap().hold)
        };
        assert_eq!(hold("0").unwrap(), Some(Duration::ZERO));
        assert_eq!(hold("2500").unwrap(), Some(Duration::from_millis(2500)));
        assert_eq!(hold("30s").unwrap(), Some(Duration::from_secs(30)));
        for bad in ["31s", "1m", "soon", "-1"] {
            let error = hold(bad).unwrap_err().to_string();
            assert!(error.contains("teal.hold"), "{bad}: {error}");
        }
        assert_eq!(
            parse("teal", &labels(&[("teal.service", "web")]))
                .unwrap()
                .unwrap()
                .hold,
            None
        );
    }

    #[test]
    fn bad_values_name_the_label() {
        for (key, value) in [
            ("teal.port", "abc"),
            ("teal.port", "0"),
            ("teal.port", "70000"),
            ("teal.host", "a b.com"),
            ("teal.host", "example.com\nserver evil 1.2.3.4:80"),
            ("teal.host", "*.example.com"),
            ("teal.path", "api"),
            ("teal.path", "/a b"),
            ("teal.path", "/a\"b"),
            ("teal.mode", "udp"),
            ("teal.weight", "257"),
            ("teal.balance", "source"),
            ("teal.health.interval", "5"),
            ("teal.slot", "red"),
            ("teal.enable", "maybe"),
            ("teal.https-redirect", "sometimes"),
            ("teal.tls", "letsencrypt"),
        ] {
            let err = parse("teal", &labels(&[("teal.service", "web"), (key, value)])).unwrap_err();
            assert_eq!(err.key, key, "{value:?}");
        }
        assert!(parse("teal", &labels(&[("teal.service", "we b")])).is_err());
        assert!(parse("teal", &labels(&[("teal.service", "teal_not_found")])).is_err());
        assert!(parse("teal", &labels(&[("teal.service", "TEAL_http")])).is_err());
    }

    #[test]
    fn host_names_are_limited_to_what_one_haproxy_line_holds() {
        let names = |n: usize| (0..n).map(|i| format!("h{i}.example")).collect::<Vec<_>>().join(",");
        let l = labels(&[("teal.service", "web"), ("teal.host", &names(MAX_HOSTS))]);
        assert_eq!(parse("teal", &l).unwrap().unwrap().hosts.len(), MAX_HOSTS);
        let l = labels(&[("teal.service", "web"), ("teal.host", &names(MAX_HOSTS + 1))]);
        let err = parse("teal", &l).unwrap_err();
        assert_eq!(err.key, "teal.host");
        assert!(err.reason.contains("at most 59"), "{}", err.reason);
        // Duplicates count once.
        let twice = format!("{},{}", names(MAX_HOSTS), names(MAX_HOSTS));
        assert!(parse("teal", &labels(&[("teal.service", "web"), ("teal.host", &twice)])).is_ok());
    }

    #[test]
    fn acme_needs_host_names_of_an_http_service() {
        let err = parse("teal", &labels(&[("teal.service", "web"), ("teal.tls", "acme")])).unwrap_err();
        assert_eq!(err.key, "teal.tls");
        assert!(err.reason.contains("teal.host"), "{}", err.reason);
        let tcp = labels(&[
            ("teal.service", "db"),
            ("teal.mode", "tcp"),
            ("teal.listen", "5432"),
            ("teal.host", "db.example"),
            ("teal.tls", "acme"),
        ]);
        assert_eq!(parse("teal", &tcp).unwrap_err().key, "teal.tls");
        let web = labels(&[
            ("teal.service", "web"),
            ("teal.tls", "acme"),
            ("teal.host", "a.example"),
        ]);
        assert!(parse("teal", &web).unwrap().unwrap().acme);
    }

    #[test]
    fn tcp_needs_listen() {
        let err = parse("teal", &labels(&[("teal.service", "db"), ("teal.mode", "tcp")])).unwrap_err();
        assert!(err.reason.contains("teal.listen"));
        let l = labels(&[("teal.service", "db"), ("teal.mode", "tcp"), ("teal.listen", "5432")]);
        assert_eq!(parse("teal", &l).unwrap().unwrap().listen, Some(5432));
    }

    #[test]
    fn mode_and_slot_text_is_their_json() {
        for mode in [Mode::Http, Mode::Tcp] {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.to_string());
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
        for slot in [Slot::Blue, Slot::Green] {
            assert_eq!(serde_json::to_value(slot).unwrap(), slot.to_string());
            assert_eq!(slot.to_string().parse(), Ok(slot));
            assert_eq!(serde_json::from_value::<Slot>(slot.to_string().into()).unwrap(), slot);
        }
    }

    #[test]
    fn check_intervals() {
        assert_eq!(parse_check_interval("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_check_interval("250"), Ok(Duration::from_millis(250)));
        assert!(parse_check_interval("50ms").is_err());
        assert!(parse_check_interval("2h").is_err());
    }
}
