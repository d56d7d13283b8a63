//! Automatic HTTPS: a certificate from an ACME server (`--acme-email`,
//! `--acme-directory`) for each `teal.host` name of the services labelled
//! `teal.tls=acme`, renewed before it expires and put in service without a
//! reload.
//!
//! One task, [`Acme::run`], follows the routed snapshots and keeps one
//! [`Entry`] per name. Names are served one order at a time, the one due
//! soonest first: a name without a certificate at once, a certificate when
//! a third of its lifetime (at most 30 days) is left, a failure again after
//! a backoff (or the server's `Retry-After`). A name that fails never holds
//! up another, nor anything else teal does.
//!
//! How a certificate gets to HAProxy:
//! - HTTP-01: the config answers `GET /.well-known/acme-challenge/TOKEN` on
//!   the HTTP frontend, for any host, from a map ([`AcmeFiles::challenges`])
//!   that teal fills through the runtime API while an order waits for the
//!   CA. No listener of teal's is involved, so it works wherever HAProxy
//!   runs.
//! - The certificate and its key go to `--state-dir/acme/certs/NAME.pem`
//!   (0600), checked with `haproxy -c` like a `--certs` file, and into the
//!   crt-list the HTTPS bind loads; then into the running HAProxy through
//!   the runtime API ([`runtime::Haproxy::load_certificate`]). Disk first:
//!   a reload at any moment loads what runs.

mod certificate;
mod client;
mod files;
mod runtime;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::apply::write_private;
use crate::model::Snapshot;
use crate::settings::Settings;

pub use certificate::CertificateInfo;
pub use client::{Challenges, Client, Failure, Issued};
pub use files::{AcmeFiles, FilesError};

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateSource {
    /// Ordered by teal (`teal.tls=acme`).
    #[default]
    Acme,
    /// A file of `--certs`.
    Certs,
}

/// A certificate teal serves (or wants), as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// ACME: the host name it is for (`teal.host`); `--certs`: the file name.
    pub name: String,
    #[serde(default)]
    pub source: CertificateSource,
    /// The names the certificate holds; empty until there is one.
    pub names: Vec<String>,
    pub issuer: Option<String>,
    /// RFC 3339, UTC.
    pub not_after: Option<String>,
    /// When teal asks for the next one (RFC 3339).
    pub renew_at: Option<String>,
    /// Why the last order failed; `None` once one succeeded.
    pub last_error: Option<String>,
    /// After a failure: when teal tries again (RFC 3339).
    pub retry_at: Option<String>,
    /// ACME: a service routes the name with `teal.tls=acme`; a certificate
    /// no service asks for any more is kept (and served) but not renewed.
    /// Always true for `--certs`.
    pub wanted: bool,
}

impl CertificateStatus {
    /// A file of `--certs`: what it holds, and why HAProxy refuses it if it does.
    pub fn of_file(file: &str, pem: &[u8], refused: Option<&str>) -> Self {
        let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let info = CertificateInfo::read(pem);
        let last_error = match (&info, refused) {
            (_, Some(reason)) => Some(format!("HAProxy refuses it: {reason}")),
            (Err(error), None) => Some(error.clone()),
            (Ok(_), None) => None,
        };
        let info = info.ok();
        Self {
            name: file.to_owned(),
            source: CertificateSource::Certs,
            names: info.as_ref().map(|c| c.names.clone()).unwrap_or_default(),
            issuer: info.as_ref().map(|c| c.issuer.clone()),
            not_after: info.as_ref().map(|c| time(c.not_after)),
            renew_at: None,
            last_error,
            retry_at: None,
            wanted: true,
        }
    }

    /// Seconds until `not_after`; `None` without a certificate.
    pub fn seconds_left(&self, now: SystemTime) -> Option<i64> {
        let not_after = humantime::parse_rfc3339(self.not_after.as_deref()?).ok()?;
        Some(match not_after.duration_since(now) {
            Ok(left) => left.as_secs() as i64,
            Err(past) => -(past.duration().as_secs() as i64),
        })
    }
}

/// What teal knows of one name.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// The certificate on disk.
    certificate: Option<CertificateInfo>,
    last_error: Option<String>,
    /// Failures in a row.
    failures: u32,
    /// Not before this, after a failure.
    retry_at: Option<SystemTime>,
}

impl Entry {
    /// When this name needs an order.
    fn due_at(&self, now: SystemTime) -> SystemTime {
        let wanted = self.certificate.as_ref().map_or(now, CertificateInfo::renew_at);
        self.retry_at.map_or(wanted, |retry| retry.max(wanted))
    }

    fn failed(&mut self, failure: Failure, now: SystemTime) {
        self.failures += 1;
        let backoff = now + retry_delay(self.failures);
        self.retry_at = Some(failure.retry_after.map_or(backoff, |after| after.max(backoff)));
        self.last_error = Some(failure.message);
    }

    fn status(&self, name: &str, wanted: bool) -> CertificateStatus {
        let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let certificate = self.certificate.as_ref();
        CertificateStatus {
            name: name.to_owned(),
            source: CertificateSource::Acme,
            names: certificate.map(|c| c.names.clone()).unwrap_or_default(),
            issuer: certificate.map(|c| c.issuer.clone()),
            not_after: certificate.map(|c| time(c.not_after)),
            renew_at: certificate.filter(|_| wanted).map(|c| time(c.renew_at())),
            last_error: self.last_error.clone(),
            retry_at: self.retry_at.filter(|_| wanted && self.last_error.is_some()).map(time),
            wanted,
        }
    }
}

/// 10 s after the first failure, three times longer after each next one,
/// at most 6 h: a name whose DNS is fixed soon gets its certificate soon,
/// and one that stays broken costs the CA a few requests an hour at most
/// (Let's Encrypt allows 5 failed validations per name and hour).
fn retry_delay(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(10);
    const MAX: Duration = Duration::from_secs(6 * 3600);
    FIRST
        .saturating_mul(3u32.saturating_pow(failures.saturating_sub(1)))
        .min(MAX)
}

/// The host names the services of `snapshot` want certificates for.
pub fn wanted_names(snapshot: &Snapshot) -> BTreeSet<String> {
    snapshot
        .services
        .iter()
        .filter(|s| s.acme)
        .flat_map(|s| s.hosts.iter().map(|h| h.as_str().to_owned()))
        .collect()
}

/// A rejected nonce that instant-acme's own retries did not get past: the
/// order is tried again at once rather than after a backoff.
const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
const ATTEMPTS_ON_BAD_NONCE: usize = 3;

/// Wall-clock waits are cut into pieces this long, so a clock that jumps
/// (a suspended machine) delays a renewal by this at most.
const LONGEST_SLEEP: Duration = Duration::from_secs(600);

/// Without `--acme-email`: the names that ask for ACME are shown in
/// `/status` with why they get no certificate, and logged once each.
pub async fn report_disabled(
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    status: watch::Sender<Vec<CertificateStatus>>,
    shutdown: CancellationToken,
) {
    let mut warned = BTreeSet::new();
    loop {
        let wanted = snapshots
            .borrow_and_update()
            .as_deref()
            .map(wanted_names)
            .unwrap_or_default();
        for name in wanted.difference(&warned) {
            tracing::warn!(name = %name, "{DISABLED}");
        }
        let entry = Entry {
            last_error: Some(DISABLED.to_owned()),
            ..Entry::default()
        };
        status.send_replace(wanted.iter().map(|name| entry.status(name, true)).collect());
        warned = wanted;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = snapshots.changed() => if changed.is_err() { break },
        }
    }
}

const DISABLED: &str =
    "labelled tls=acme, but teal runs without --acme-email: no certificate is requested (served over HTTP)";

/// The ACME task of `teal run`.
pub struct Acme {
    pub client: Client,
    pub haproxy: runtime::Haproxy,
    /// `--haproxy`, which checks each new certificate before it is served.
    pub haproxy_bin: PathBuf,
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    pub status: watch::Sender<Vec<CertificateStatus>>,
}

impl Acme {
    /// With `settings.acme`: reads `--acme-ca-file`; the account is made or
    /// loaded at the first order.
    pub fn new(
        settings: &Settings,
        snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
        status: watch::Sender<Vec<CertificateStatus>>,
    ) -> Result<Option<Self>, String> {
        let Some(acme) = &settings.acme else {
            return Ok(None);
        };
        let files = AcmeFiles::new(&settings.acme_dir());
        Ok(Some(Self {
            client: Client::new(acme, files.account(&acme.directory))?,
            haproxy: runtime::Haproxy::new(settings.admin_socket(), files),
            haproxy_bin: settings.haproxy.clone(),
            snapshots,
            status,
        }))
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut entries = self.certificates_on_disk();
        loop {
            let wanted = self.snapshots.borrow().as_deref().map(wanted_names).unwrap_or_default();
            self.publish(&entries, &wanted);
            let now = SystemTime::now();
            let next = wanted
                .iter()
                .map(|name| (entries.get(name).map_or(now, |e| e.due_at(now)), name))
                .min();
            if let Some((_, name)) = next.filter(|(at, _)| *at <= now) {
                let name = name.clone();
                let entry = entries.get(&name).cloned().unwrap_or_default();
                let renewal = entry.certificate.is_some();
                tracing::info!(name = %name, renewal, "requesting a certificate");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    result = self.obtain(&name) => {
                        let entry = entries.entry(name.clone()).or_default();
                        match result {
                            Ok(certificate) => {
                                tracing::info!(name = %name, not_after = %humantime::format_rfc3339_seconds(certificate.not_after), "certificate issued and served");
                                *entry = Entry { certificate: Some(certificate), ..Entry::default() };
                            }
                            Err(failure) => {
                                tracing::warn!(name = %name, error = %failure.message, "no certificate; the name stays on what it had");
                                entry.failed(failure, SystemTime::now());
                            }
                        }
                    }
                }
                continue;
            }
            let wait = next
                .map(|(at, _)| at.duration_since(now).unwrap_or_default())
                .unwrap_or(LONGEST_SLEEP)
                .min(LONGEST_SLEEP);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = self.snapshots.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The certificates a previous run got: a restart asks for none of them again.
    fn certificates_on_disk(&self) -> BTreeMap<String, Entry> {
        let dir = self.haproxy.files.certs_dir();
        let Ok(listing) = std::fs::read_dir(&dir) else {
            return BTreeMap::new();
        };
        listing
            .flatten()
            .filter_map(|entry| {
                let file = entry.file_name().to_string_lossy().into_owned();
                let name = file.strip_suffix(".pem")?.to_owned();
                let certificate = std::fs::read(entry.path())
                    .ok()
                    .and_then(|pem| CertificateInfo::read(&pem).ok());
                Some((
                    name,
                    Entry {
                        certificate,
                        ..Entry::default()
                    },
                ))
            })
            .collect()
    }

    fn publish(&self, entries: &BTreeMap<String, Entry>, wanted: &BTreeSet<String>) {
        let names: BTreeSet<&String> = entries.keys().chain(wanted).collect();
        let statuses = names
            .into_iter()
            .map(|name| {
                let entry = entries.get(name).cloned().unwrap_or_default();
                entry.status(name, wanted.contains(name))
            })
            .collect();
        self.status.send_if_modified(|current| {
            let changed = *current != statuses;
            *current = statuses;
            changed
        });
    }

    /// Orders, checks, stores and serves a certificate for `name`.
    async fn obtain(&mut self, name: &str) -> Result<CertificateInfo, Failure> {
        let mut attempt = 1;
        let issued = loop {
            match self.client.issue(name, &mut self.haproxy).await {
                Err(failure) if failure.message.contains(BAD_NONCE) && attempt < ATTEMPTS_ON_BAD_NONCE => {
                    tracing::debug!(name, "nonce rejected again; ordering anew");
                    attempt += 1;
                }
                result => break result?,
            }
        };
        let failure = |message: String| Failure {
            message,
            retry_after: None,
        };
        let chain: String = issued
            .chain
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let pem = format!("{chain}{}", issued.key);
        let certificate = CertificateInfo::read(pem.as_bytes())
            .map_err(|e| failure(format!("the CA sent a bad certificate: {e}")))?;
        let files = &self.haproxy.files;
        let staged = files.staged(name);
        write_private(&staged, pem.as_bytes())
            .map_err(|e| failure(format!("cannot write {}: {e}", staged.display())))?;
        if let Err(reason) = crate::tls::check_file(&self.haproxy_bin, &staged) {
            let _ = std::fs::remove_file(&staged);
            return Err(failure(format!("HAProxy cannot load the new certificate: {reason}")));
        }
        let path = files.certificate(name);
        std::fs::rename(&staged, &path).map_err(|e| failure(format!("cannot write {}: {e}", path.display())))?;
        files.relist(&self.haproxy_bin).map_err(|e| failure(e.to_string()))?;
        let path = path.display().to_string();
        if let Err(error) = self.haproxy.load_certificate(name, &path, &pem).await {
            // On disk and listed: the next start or reload serves it.
            tracing::warn!(name, %error, "the running HAProxy did not take the certificate; it is served from the next reload");
        }
        Ok(certificate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_acme_the_names_that_ask_show_why_they_get_nothing() {
        use crate::model::tests::{facts, scope};
        use crate::model::{ContainerUpdate, Inventory};
        let mut web = facts("a", "web", "10.0.0.2");
        web.labels.insert("teal.host", "a.example,b.example");
        web.labels.insert("teal.tls", "acme");
        let mut inventory = Inventory::default();
        inventory.apply(ContainerUpdate::Resync(vec![web, facts("bb", "plain", "10.0.0.3")]));
        let (_snapshots_tx, snapshots) = watch::channel(Some(Arc::new(inventory.snapshot(&scope()))));
        let (status_tx, mut status) = watch::channel(Vec::new());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(report_disabled(snapshots, status_tx, shutdown.clone()));
        status.changed().await.unwrap();
        let names: Vec<(String, bool)> = status
            .borrow()
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.last_error.as_deref().is_some_and(|e| e.contains("--acme-email")),
                )
            })
            .collect();
        assert_eq!(names, [("a.example".into(), true), ("b.example".into(), true)]);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn a_certs_file_shows_its_names_or_why_it_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        let good = CertificateStatus::of_file("a.pem", pem.as_bytes(), None);
        assert_eq!(
            (good.source, good.names.as_slice()),
            (CertificateSource::Certs, &["a.example".to_owned()][..])
        );
        assert!(good.last_error.is_none() && good.not_after.is_some());
        let refused = CertificateStatus::of_file("b.pem", b"junk", Some("unable to load certificate"));
        assert_eq!(
            refused.last_error.as_deref(),
            Some("HAProxy refuses it: unable to load certificate")
        );
        assert!(refused.not_after.is_none());
    }

    #[test]
    fn retries_after_10s_then_three_times_longer_up_to_6h() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 30, 90, 270, 810, 2430, 7290, 21600, 21600]);
        assert_eq!(retry_delay(u32::MAX).as_secs(), 21600);
    }

    #[test]
    fn a_failure_waits_its_backoff_or_the_servers_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut entry = Entry::default();
        assert_eq!(entry.due_at(now), now, "no certificate: at once");
        entry.failed(
            Failure {
                message: "refused".into(),
                retry_after: None,
            },
            now,
        );
        assert_eq!(entry.due_at(now), now + Duration::from_secs(10));
        let later = now + Duration::from_secs(3600);
        entry.failed(
            Failure {
                message: "rate limited".into(),
                retry_after: Some(later),
            },
            now,
        );
        assert_eq!(entry.due_at(now), later);
        let status = entry.status("a.example", true);
        assert_eq!(status.last_error.as_deref(), Some("rate limited"));
        assert_eq!(status.retry_at.as_deref(), Some("1970-01-12T14:46:40Z"));
        assert!(status.not_after.is_none() && status.names.is_empty());
    }
}
