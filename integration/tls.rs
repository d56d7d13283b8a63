//! TLS termination: `--certs DIR` served by SNI on `--https-bind`, a
//! redirect of plain HTTP per service, and certificates added or replaced
//! while teal runs. Certificates are made here with the openssl CLI;
//! clients are curl and `openssl s_client`, both to 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::Command;

use crate::docker::Docker;
use crate::http;
use crate::teal::Teal;
use crate::util::{free_addr, unique_prefix, wait_for, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);

/// A certificate directory, and a scratch directory beside it where new
/// files are made before they are renamed in (so HAProxy never sees half a file).
pub(crate) struct Certs {
    root: TempDir,
}

impl Certs {
    pub(crate) fn new() -> Certs {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join("certs")).expect("certs dir");
        std::fs::create_dir(root.path().join("scratch")).expect("scratch dir");
        Certs { root }
    }

    pub(crate) fn dir(&self) -> PathBuf {
        self.root.path().join("certs")
    }

    /// A new self-signed certificate (and key) for `name`, as `<name>.pem`;
    /// returns the certificate part, PEM.
    pub(crate) async fn issue(&self, name: &str) -> String {
        let scratch = self.root.path().join("scratch");
        let (cert_pem, key) = crate::self_signed::self_signed(name);
        let pem = format!("{cert_pem}{key}");
        let staged = scratch.join(format!("{name}.pem"));
        std::fs::write(&staged, pem).expect("write pem");
        std::fs::rename(&staged, self.dir().join(format!("{name}.pem"))).expect("rename pem");
        cert_pem
    }
}

/// The certificate (PEM) the server at `port` presents for SNI `name`.
pub(crate) async fn presented(port: u16, name: &str) -> Option<String> {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            name,
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(5), out).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text.find("-----END CERTIFICATE-----")? + "-----END CERTIFICATE-----".len();
    Some(text[start..end].to_owned())
}

pub(crate) fn same_pem(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// `GET https://name:port/` through curl (certificate not verified: it is
/// self-signed); the body, or why not.
pub(crate) async fn https_get(port: u16, name: &str) -> String {
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}/");
    let out = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_code}",
            &url,
        ])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim_end().rsplit_once('\n') {
        Some((body, "200")) => body.trim().to_owned(),
        Some((_, code)) => format!("HTTP {code}"),
        None => format!("curl failed ({}): {text}", out.status),
    }
}

async fn start_teal(prefix: &str, certs: &Path, https_port: u16) -> Teal {
    Teal::builder(prefix)
        .args(&[
            "--certs",
            certs.to_str().expect("utf-8 path"),
            "--https-bind",
            &format!("127.0.0.1:{https_port}"),
        ])
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminates_tls_by_sni_and_redirects_per_service() {
    let prefix = unique_prefix();
    let (a, b) = (format!("a.{prefix}.test"), format!("b.{prefix}.test"));
    let certs = Certs::new();
    let cert_a = certs.issue(&a).await;
    let cert_b = certs.issue(&b).await;
    let docker = Docker::shared();
    let https = free_addr().port();
    let teal = start_teal(&prefix, &certs.dir(), https).await;

    let secure = docker
        .container(&prefix, "secure")
        .service("secure")
        .label("host", &a)
        .label("https-redirect", "true")
        .run()
        .await;
    let plain = docker
        .container(&prefix, "plain")
        .service("plain")
        .label("host", &b)
        .run()
        .await;

    wait_until(CONVERGE, "both are served over HTTPS", || async {
        https_get(https, &a).await == secure.body && https_get(https, &b).await == plain.body
    })
    .await;
    // Each name gets its own certificate.
    assert!(same_pem(&presented(https, &a).await.expect("TLS to a"), &cert_a));
    // /status and the metrics describe each file.
    let report = teal.report().await.expect("/status");
    let file = format!("{a}.pem");
    let listed = report.certificates.iter().find(|c| c.name == file).expect("listed");
    assert_eq!(listed.names, std::slice::from_ref(&a));
    assert!(listed.last_error.is_none() && listed.not_after.is_some(), "{listed:?}");
    let left = teal
        .metric(&format!("teal_certificate_expiry_seconds{{name=\"{file}\"}}"))
        .await
        .expect("expiry metric");
    assert!(left > 3600.0, "{left}");
    assert!(same_pem(&presented(https, &b).await.expect("TLS to b"), &cert_b));

    // Plain HTTP: redirected for the service that asks, served for the other.
    let response = http::get(teal.http, &a, "/some/page?x=1").await.expect("GET a");
    assert_eq!(response.status, 301, "{response:?}");
    assert_eq!(
        response.header("location"),
        Some(format!("https://{a}:{https}/some/page?x=1").as_str())
    );
    assert_eq!(http::describe(&http::get(teal.http, &b, "/").await), plain.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_added_or_replaced_take_effect_without_a_restart() {
    let prefix = unique_prefix();
    let (a, c) = (format!("a.{prefix}.test"), format!("c.{prefix}.test"));
    let certs = Certs::new();
    let first = certs.issue(&a).await;
    let docker = Docker::shared();
    let https = free_addr().port();
    let teal = start_teal(&prefix, &certs.dir(), https).await;
    let pid = teal.pid();
    let web = docker.container(&prefix, "web").service("web").run().await;
    wait_until(CONVERGE, "web is served over HTTPS", || async {
        https_get(https, &a).await == web.body
    })
    .await;
    assert!(same_pem(&presented(https, &a).await.expect("TLS"), &first));

    // Replaced in place (renamed over): the new one is served.
    let second = certs.issue(&a).await;
    assert!(!same_pem(&first, &second));
    wait_until(CONVERGE, "the replaced certificate is presented", || async {
        presented(https, &a).await.is_some_and(|p| same_pem(&p, &second))
    })
    .await;

    // A new name: until its file exists, SNI falls back to the only other one.
    let third = certs.issue(&c).await;
    let now = wait_for(CONVERGE, "the new certificate is presented for its name", || async {
        presented(https, &c).await.filter(|p| same_pem(p, &third))
    })
    .await;
    assert!(same_pem(&now, &third));
    assert!(same_pem(&presented(https, &a).await.expect("TLS"), &second));
    assert_eq!(https_get(https, &a).await, web.body);
    assert_eq!(teal.pid(), pid, "teal was not restarted");
}
