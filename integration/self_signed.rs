//! A self-signed certificate for a host name, made with `openssl` (Debian's
//! package). One file for the unit tests (`src/tls.rs`), the integration
//! tests and the fault benchmark, which include it with `#[path]`.

use std::process::Command;

/// A new certificate for `name` (CN and subjectAltName) and its key, PEM.
pub fn self_signed(name: &str) -> (String, String) {
    let scratch = tempfile::tempdir().expect("temp dir");
    let (key, cert) = (scratch.path().join("key.pem"), scratch.path().join("cert.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (the Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |path| std::fs::read_to_string(path).expect("openssl's output");
    (read(&cert), read(&key))
}
