//! `--certs DIR`: the certificates HAProxy serves by SNI (`crate::watch` follows the directory).
//!
//! Each file is checked on its own (`haproxy -c` on a config that loads
//! only it, once per content): a broken one is refused alone, with
//! HAProxy's words, and HAProxy loads the others from a crt-list teal
//! writes (`bind ... ssl crt-list FILE`), the first file being the default.
//! The files are listed with a digest of each in the template context, so
//! a new or replaced certificate changes the rendered config, and the usual
//! validate-then-reload puts it in service. Nothing restarts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// One file of the certificate directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Certificate {
    /// The file name, with anything outside `A-Z a-z 0-9 . _ - + @` shown as
    /// `_`: file names are not trusted to be safe in haproxy.cfg.
    pub file: String,
    /// SHA-256 of the contents, hex.
    pub sha256: String,
}

/// A file of the certificate directory HAProxy would not load, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RefusedCertificate {
    /// The file name, shown as in [`Certificate::file`].
    pub file: String,
    pub reason: String,
}

/// The directory, checked: what HAProxy serves and what it would refuse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// In the crt-list, in this order (the first is the default certificate).
    pub certificates: Vec<Certificate>,
    pub refused: Vec<RefusedCertificate>,
}

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("cannot read the certificate directory {dir} (--certs): {source}")]
    Read { dir: String, source: std::io::Error },
    #[error("cannot write the certificate list {path} (in --state-dir): {source}")]
    Write { path: String, source: std::io::Error },
}

/// Files HAProxy reads with a certificate of the same name, not on their own.
const COMPANIONS: &[&str] = &[".key", ".ocsp", ".issuer", ".sctl"];

/// The files HAProxy loads from `dir`: every regular file but dotfiles
/// (editors' temp files usually are) and companion files (`.key`, `.ocsp`,
/// `.issuer`, `.sctl`), by name, each with its contents.
pub(crate) fn scan(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, CertsError> {
    let error = |source| CertsError::Read {
        dir: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let entry = entry.map_err(error)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Follows symlinks, as HAProxy does (Kubernetes-style `..data` links).
        if name.starts_with('.') || COMPANIONS.iter().any(|c| name.ends_with(c)) || !entry.path().is_file() {
            continue;
        }
        let contents = match std::fs::read(entry.path()) {
            Ok(contents) => contents,
            // Deleted between the listing and the read: the next event rescans.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(error(e)),
        };
        files.push((name.into_owned(), contents));
    }
    files.sort();
    Ok(files)
}

/// Reads and checks `dir` with `haproxy`, and writes the crt-list of the
/// certificates that load to `crt_list` (when it changed).
pub fn load(dir: &Path, haproxy: &Path, crt_list: &Path) -> Result<Checked, CertsError> {
    let check_config = crt_list.with_extension("check.cfg");
    let write_error = |source| CertsError::Write {
        path: crt_list.display().to_string(),
        source,
    };
    let absolute = std::path::absolute(dir).map_err(|source| CertsError::Read {
        dir: dir.display().to_string(),
        source,
    })?;
    let mut checked = Checked::default();
    let mut list = String::new();
    for (name, contents) in scan(dir)? {
        let sha256 = hex(&Sha256::digest(&contents));
        let file = safe_name(&name);
        let verdict = if file != name {
            // A crt-list line is words: the name would be read as options.
            Err(
                "the file name holds characters HAProxy's crt-list cannot (use A-Z a-z 0-9 . _ - + @); rename it"
                    .into(),
            )
        } else {
            check(haproxy, &absolute.join(&name), &sha256, &check_config)
        };
        match verdict {
            Ok(()) => {
                list.push_str(&format!("{}\n", absolute.join(&name).display()));
                checked.certificates.push(Certificate { file, sha256 });
            }
            Err(reason) => {
                tracing::warn!(file = %file, %reason, "certificate refused; the others are served");
                checked.refused.push(RefusedCertificate { file, reason });
            }
        }
    }
    if std::fs::read_to_string(crt_list).ok().as_deref() != Some(list.as_str()) {
        crate::apply::write_atomic(crt_list, list.as_bytes()).map_err(write_error)?;
    }
    Ok(checked)
}

/// Whether HAProxy loads the certificate (and key) in `path`: checked once per content.
pub fn check_file(haproxy: &Path, path: &Path) -> Result<(), String> {
    let contents = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let sha256 = hex(&Sha256::digest(&contents));
    check(haproxy, path, &sha256, &path.with_extension("check.cfg"))
}

/// Verdicts by HAProxy binary and certificate digest: a file is checked
/// once per content. A memo of a pure function, so never stale.
static VERDICTS: Mutex<Option<HashMap<VerdictKey, Result<(), String>>>> = Mutex::new(None);
/// The HAProxy binary and the certificate's digest.
type VerdictKey = (PathBuf, String);
const VERDICTS_KEPT: usize = 1024;

/// `haproxy -c` on `config`, written to load only `path` (with `sha256`).
fn check(haproxy: &Path, path: &Path, sha256: &str, config: &Path) -> Result<(), String> {
    let key = (haproxy.to_owned(), sha256.to_owned());
    if let Some(verdict) = VERDICTS.lock().ok().and_then(|v| v.as_ref()?.get(&key).cloned()) {
        return verdict;
    }
    let verdict = run_check(haproxy, path, config);
    if let Ok(mut verdicts) = VERDICTS.lock() {
        let verdicts = verdicts.get_or_insert_with(HashMap::new);
        if verdicts.len() >= VERDICTS_KEPT {
            verdicts.clear();
        }
        verdicts.insert(key, verdict.clone());
    }
    verdict
}

fn run_check(haproxy: &Path, path: &Path, config: &Path) -> Result<(), String> {
    // Port 1 is never bound: `haproxy -c` only loads the certificate.
    let text = format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n\
         frontend teal_certificate_check\n    bind 127.0.0.1:1 ssl crt {}\n",
        path.display()
    );
    std::fs::write(config, text).map_err(|e| format!("cannot check it: {e}"))?;
    let output = std::process::Command::new(haproxy)
        .arg("-c")
        .arg("-f")
        .arg(config)
        .output();
    let _ = std::fs::remove_file(config);
    let output = output.map_err(|e| format!("cannot run {} -c: {e}", haproxy.display()))?;
    if output.status.success() {
        return Ok(());
    }
    // `parsing [check.cfg:7] : 'bind ...' in section 'frontend' : unable
    // to load certificate from file '...'.`: the last part says it.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let alert = stderr.lines().find(|l| l.contains("[ALERT]")).unwrap_or(stderr.trim());
    Err(alert.rsplit(" : ").next().unwrap_or(alert).trim().to_owned())
}

fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "../integration/self_signed.rs"]
mod self_signed;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate and its key in one PEM file, as HAProxy reads them.
    pub(crate) fn make_certificate(dir: &Path, name: &str) {
        let (cert, key) = self_signed::self_signed(name);
        std::fs::write(dir.join(format!("{name}.pem")), cert + &key).unwrap();
    }

    const HAPROXY: &str = "/usr/sbin/haproxy";

    #[test]
    fn lists_files_with_digests_and_skips_dotfiles_and_companions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.example.pem"), "B").unwrap();
        std::fs::write(dir.path().join("a.example.pem"), "A").unwrap();
        std::fs::write(dir.path().join("a.example.pem.key"), "K").unwrap();
        std::fs::write(dir.path().join(".a.example.pem.swp"), "junk").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let files = scan(dir.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["a.example.pem", "b.example.pem"]);
    }

    #[test]
    fn a_broken_certificate_is_refused_alone_and_the_others_listed() {
        if !Path::new(HAPROXY).exists() {
            eprintln!("SKIPPED: {HAPROXY} is missing");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        make_certificate(dir.path(), "b.example");
        make_certificate(dir.path(), "d.example");
        std::fs::write(dir.path().join("c.example.pem"), "-----BEGIN CERTIFICATE-----\nxx\n").unwrap();
        std::fs::write(dir.path().join("odd name.pem"), "C").unwrap();
        let list = state.path().join("certificates.list");
        let checked = load(dir.path(), Path::new(HAPROXY), &list).unwrap();
        let good: Vec<&str> = checked.certificates.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(good, ["b.example.pem", "d.example.pem"]);
        let refused: Vec<&str> = checked.refused.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(refused, ["c.example.pem", "odd_name.pem"]);
        assert!(
            checked.refused[0]
                .reason
                .starts_with("unable to load certificate from file"),
            "{}",
            checked.refused[0].reason
        );
        assert!(checked.refused[1].reason.contains("rename it"));
        let sha = hex(&Sha256::digest(
            std::fs::read(dir.path().join("b.example.pem")).unwrap(),
        ));
        assert_eq!(checked.certificates[0].sha256, sha);
        let absolute = std::path::absolute(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&list).unwrap(),
            format!(
                "{}\n{}\n",
                absolute.join("b.example.pem").display(),
                absolute.join("d.example.pem").display()
            )
        );
        // Fixed: served at the next load.
        make_certificate(dir.path(), "c.example");
        let checked = load(dir.path(), Path::new(HAPROXY), &list).unwrap();
        assert_eq!(checked.certificates.len(), 3);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let error = scan(Path::new("/nonexistent/teal-certs")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/teal-certs"));
    }
}
