//! The files of ACME in `--state-dir/acme/`: what teal keeps (the account,
//! the certificates, each with its key) and what HAProxy loads (the
//! crt-list of those certificates, a fallback certificate, the challenge
//! answers and the names it may redirect to HTTPS). The directory is 0700,
//! the account and every key 0600.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::apply::{create_private_dir, write_atomic, write_private};
use crate::tls::{self, Checked};

/// Paths of the ACME files; the template context shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmeFiles {
    /// The certificates teal got, as HAProxy's crt-list (`bind ... crt-list`).
    pub crt_list: String,
    /// A self-signed certificate, HAProxy's default while no other is loaded:
    /// an `ssl` bind needs one.
    pub fallback: String,
    /// `TOKEN KEY-AUTHORIZATION` lines: HAProxy answers the CA's HTTP-01
    /// requests from this map, which teal fills through the runtime API.
    pub challenges: String,
    /// The host names whose certificate HAProxy serves, one a line: only
    /// those are redirected to HTTPS (`teal.https-redirect`).
    pub served: String,
    #[serde(skip)]
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot prepare the ACME files in {dir} (--state-dir): {reason}")]
pub struct FilesError {
    dir: String,
    reason: String,
}

impl AcmeFiles {
    /// The files under `dir` (`--state-dir/acme`).
    pub fn new(dir: &Path) -> Self {
        let path = |name: &str| dir.join(name).display().to_string();
        Self {
            crt_list: path("certificates.list"),
            fallback: path("fallback.pem"),
            challenges: path("challenges.map"),
            served: path("served.list"),
            dir: dir.to_owned(),
        }
    }

    /// One PEM file per host name: the certificate, its chain, its key.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    pub fn certificate(&self, name: &str) -> PathBuf {
        self.certs_dir().join(format!("{name}.pem"))
    }

    /// The account of one ACME server (by directory URL): a key per server.
    pub fn account(&self, directory: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(directory.as_bytes());
        let id: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("account-{id}.json"))
    }

    /// A scratch file in the certificates' directory's parent, renamed in
    /// once checked.
    pub fn staged(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.pem.new"))
    }

    /// Makes everything the config names exist before HAProxy loads it: the
    /// directories, the fallback certificate, an empty challenge map, and
    /// the crt-list and served names of the certificates on disk that load
    /// (`haproxy` checks each, as for `--certs`).
    pub fn prepare(&self, haproxy: &Path) -> Result<Checked, FilesError> {
        let error = |reason: String| FilesError {
            dir: self.dir.display().to_string(),
            reason,
        };
        create_private_dir(&self.certs_dir()).map_err(|e| error(e.to_string()))?;
        let fallback = Path::new(&self.fallback);
        if !fallback.exists() {
            write_private(fallback, fallback_certificate()?.as_bytes()).map_err(|e| error(e.to_string()))?;
        }
        // Answers of an earlier run are stale: the CA asks again.
        write_atomic(Path::new(&self.challenges), b"").map_err(|e| error(e.to_string()))?;
        self.relist(haproxy).map_err(|e| error(e.to_string()))
    }

    /// Rewrites the crt-list and the served names from the certificates on
    /// disk: after a new one, so that a reload loads what runs.
    pub fn relist(&self, haproxy: &Path) -> Result<Checked, tls::CertsError> {
        let checked = tls::load(&self.certs_dir(), haproxy, Path::new(&self.crt_list))?;
        let served: String = checked
            .certificates
            .iter()
            .filter_map(|c| c.file.strip_suffix(".pem"))
            .map(|name| format!("{name}\n"))
            .collect();
        if std::fs::read_to_string(&self.served).ok().as_deref() != Some(served.as_str()) {
            write_atomic(Path::new(&self.served), served.as_bytes()).map_err(|source| tls::CertsError::Write {
                path: self.served.clone(),
                source,
            })?;
        }
        Ok(checked)
    }

    /// Rewrites the challenge map with `answers` (token, key authorization),
    /// so that a reload while a challenge is pending keeps answering it.
    pub fn write_challenges<'a>(&self, answers: impl Iterator<Item = (&'a str, &'a str)>) -> std::io::Result<()> {
        let text: String = answers.map(|(token, answer)| format!("{token} {answer}\n")).collect();
        write_atomic(Path::new(&self.challenges), text.as_bytes())
    }
}

/// A self-signed certificate and its key, PEM: served to a client whose SNI
/// names no certificate teal has (yet), which it will refuse.
fn fallback_certificate() -> Result<String, FilesError> {
    let error = |e: rcgen::Error| FilesError {
        dir: String::new(),
        reason: format!("cannot make the fallback certificate: {e}"),
    };
    let mut params = rcgen::CertificateParams::new(vec!["teal-fallback.invalid".to_owned()]).map_err(error)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "teal: no certificate for this name yet");
    let key = rcgen::KeyPair::generate().map_err(error)?;
    let cert = params.self_signed(&key).map_err(error)?;
    Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn prepare_makes_what_haproxy_loads_and_keeps_keys_private() {
        let state = tempfile::tempdir().unwrap();
        let files = AcmeFiles::new(&state.path().join("acme"));
        let checked = files.prepare(Path::new("/usr/sbin/haproxy")).unwrap();
        assert!(checked.certificates.is_empty());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state.path().join("acme")), 0o700);
        assert_eq!(mode(Path::new(&files.fallback)), 0o600);
        let fallback = std::fs::read_to_string(&files.fallback).unwrap();
        assert!(fallback.contains("BEGIN CERTIFICATE") && fallback.contains("PRIVATE KEY"));
        assert_eq!(std::fs::read_to_string(&files.crt_list).unwrap(), "");
        assert_eq!(std::fs::read_to_string(&files.challenges).unwrap(), "");
        // The fallback is made once: a restart keeps it.
        files.prepare(Path::new("/usr/sbin/haproxy")).unwrap();
        assert_eq!(std::fs::read_to_string(&files.fallback).unwrap(), fallback);
    }

    #[test]
    fn challenges_are_token_and_answer_lines() {
        let state = tempfile::tempdir().unwrap();
        let files = AcmeFiles::new(state.path());
        files
            .write_challenges([("t1", "t1.x"), ("t2", "t2.x")].into_iter())
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&files.challenges).unwrap(),
            "t1 t1.x\nt2 t2.x\n"
        );
    }

    #[test]
    fn an_account_per_directory() {
        let files = AcmeFiles::new(Path::new("/s/acme"));
        assert_ne!(files.account("https://a/dir"), files.account("https://b/dir"));
        assert!(files.account("https://a/dir").starts_with("/s/acme"));
    }
}
