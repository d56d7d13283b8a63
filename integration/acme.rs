//! Automatic HTTPS against a real ACME server (pebble, see `pebble.rs`):
//! a certificate issued for a container's host and served with a chain to
//! the CA's root (on the preview listener's HTTPS too), renewed without a reload, a challenge that cannot be
//! answered reported and retried while the other names get theirs, and a
//! restart that serves the certificate it has without asking the CA.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::docker::Docker;
use crate::http;
use crate::pebble::Pebble;
use crate::teal::Teal;
use crate::tls::{presented, same_pem};
use crate::util::{free_addr, unique_prefix, wait_for, wait_until};

/// An order against pebble without its validation sleep takes well under a second.
const ISSUED: Duration = Duration::from_secs(30);

/// `teal run` with ACME against `pebble`, HTTPS on `https`.
fn teal_with_acme(prefix: &str, pebble: &Pebble, http: std::net::SocketAddr, https: u16) -> crate::teal::TealBuilder {
    Teal::builder(prefix).http(http).args(&[
        "--https-bind",
        &format!("127.0.0.1:{https}"),
        "--acme-email",
        "ops@example.com",
        "--acme-directory",
        &pebble.directory,
        "--acme-ca-file",
        pebble.ca_file.to_str().expect("utf-8 path"),
    ])
}

/// `GET https://name:port/` verified against `root` (a PEM file): the body,
/// or why not.
async fn verified_get(port: u16, name: &str, root: &Path) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "--cacert"])
        .arg(root)
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1"), "-w", "\n%{http_code}"])
        .arg(format!("https://{name}:{port}/"))
        .kill_on_drop(true)
        .output()
        .await
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim_end().rsplit_once('\n') {
        Some((body, "200")) => body.trim().to_owned(),
        _ => format!("curl exit {}: {text}", out.status),
    }
}

/// The certificate `/status` shows for `name`.
async fn certificate(teal: &Teal, name: &str) -> Option<teal::acme::CertificateStatus> {
    let report = teal.report().await.ok()?;
    report.certificates.into_iter().find(|c| c.name == name)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_serves_and_keeps_a_certificate_across_a_restart() {
    let prefix = unique_prefix();
    let name = format!("web.{prefix}.test");
    let (http_addr, https) = (free_addr(), free_addr().port());
    let pebble = Pebble::builder(http_addr.port()).start().await;
    let state = tempfile::tempdir().expect("state dir");
    // Blue/green: the preview listener serves the green slot over HTTPS too.
    let (preview, preview_https) = (free_addr(), free_addr().port());
    let preview_args = [
        "--preview-bind".to_owned(),
        preview.to_string(),
        "--preview-https-bind".to_owned(),
        format!("127.0.0.1:{preview_https}"),
    ];
    let preview_args: Vec<&str> = preview_args.iter().map(String::as_str).collect();
    let mut teal = teal_with_acme(&prefix, &pebble, http_addr, https)
        .state_dir(state.path())
        .args(&preview_args)
        .start()
        .await;
    let docker = Docker::shared();
    let web = docker
        .container(&prefix, "web")
        .service("web")
        .label("host", &name)
        .label("tls", "acme")
        .label("https-redirect", "true")
        .label("slot", "blue")
        .run()
        .await;
    let green = docker
        .container(&prefix, "green")
        .service("web")
        .label("host", &name)
        .label("tls", "acme")
        .label("https-redirect", "true")
        .label("slot", "green")
        .run()
        .await;
    let root = teal.dir().join("pebble-root.pem");
    std::fs::write(&root, pebble.root().await).expect("write root");
    wait_until(ISSUED, "HTTPS is served with a chain to pebble's root", || async {
        verified_get(https, &name, &root).await == web.body
    })
    .await;
    wait_until(
        ISSUED,
        "the preview listener serves the other slot over HTTPS",
        || async { verified_get(preview_https, &name, &root).await == green.body },
    )
    .await;

    // Plain HTTP redirects once the name has its certificate (the name is
    // added to the redirecting ones just after the certificate).
    let response = wait_for(ISSUED, "plain HTTP redirects to HTTPS", || async {
        http::get(teal.http, &name, "/page")
            .await
            .ok()
            .filter(|r| r.status == 301)
    })
    .await;
    assert_eq!(
        response.header("location"),
        Some(format!("https://{name}:{https}/page").as_str())
    );
    let status = certificate(&teal, &name).await.expect("in /status");
    assert_eq!(status.names, std::slice::from_ref(&name));
    assert!(
        status.issuer.as_deref().is_some_and(|i| i.contains("Pebble")),
        "{status:?}"
    );
    assert!(
        status.last_error.is_none() && status.not_after.is_some() && status.wanted,
        "{status:?}"
    );
    let left = teal
        .metric(&format!("teal_certificate_expiry_seconds{{name=\"{name}\"}}"))
        .await
        .expect("expiry metric");
    assert!(left > 3600.0, "{left}");
    let files = state.path().join("acme");
    assert_eq!(mode(&files), 0o700);
    assert_eq!(mode(&files.join(format!("certs/{name}.pem"))), 0o600);
    let account = std::fs::read_dir(&files)
        .expect("acme dir")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("account-"))
        .expect("account file");
    assert_eq!(mode(&account.path()), 0o600);
    let served = presented(https, &name).await.expect("TLS");

    // Restarted with the CA gone: the certificate is served from disk, and
    // nothing is asked of the CA (it would fail).
    let stopped = teal.stop();
    assert!(stopped.orphans.is_empty(), "{:?}", stopped.orphans);
    let mut pebble = pebble;
    pebble.stop();
    let teal = teal_with_acme(&prefix, &pebble, http_addr, https)
        .state_dir(state.path())
        .args(&preview_args)
        .start()
        .await;
    wait_until(ISSUED, "the same certificate is served after the restart", || async {
        presented(https, &name).await.is_some_and(|p| same_pem(&p, &served))
    })
    .await;
    assert_eq!(verified_get(https, &name, &root).await, web.body);
    let status = certificate(&teal, &name).await.expect("in /status");
    assert!(status.last_error.is_none(), "{status:?}");
    assert!(!teal.log().contains("requesting a certificate"), "{}", teal.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_a_short_lived_certificate_without_a_reload() {
    let prefix = unique_prefix();
    let name = format!("short.{prefix}.test");
    let (http_addr, https) = (free_addr(), free_addr().port());
    // Renewed a third of its lifetime before it ends: 4 s after issue.
    let pebble = Pebble::builder(http_addr.port())
        .validity(Duration::from_secs(6))
        .start()
        .await;
    let teal = teal_with_acme(&prefix, &pebble, http_addr, https).start().await;
    let docker = Docker::shared();
    let web = docker
        .container(&prefix, "web")
        .service("web")
        .label("host", &name)
        .label("tls", "acme")
        .run()
        .await;
    let root = teal.dir().join("pebble-root.pem");
    std::fs::write(&root, pebble.root().await).expect("write root");
    wait_until(ISSUED, "HTTPS is served", || async {
        verified_get(https, &name, &root).await == web.body
    })
    .await;
    let first = presented(https, &name).await.expect("TLS");
    let first_until = certificate(&teal, &name).await.and_then(|c| c.not_after);
    let reloads = teal.reloads().await;

    let second = wait_for(ISSUED, "a renewed certificate is presented", || async {
        presented(https, &name).await.filter(|p| !same_pem(p, &first))
    })
    .await;
    assert_eq!(verified_get(https, &name, &root).await, web.body);
    let status = certificate(&teal, &name).await.expect("in /status");
    assert!(status.not_after > first_until, "{status:?} vs {first_until:?}");
    assert!(status.last_error.is_none(), "{status:?}");
    assert_eq!(teal.reloads().await, reloads, "renewal went through the runtime API");
    assert!(!same_pem(&first, &second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswerable_challenge_is_reported_and_retried_and_others_are_served() {
    let prefix = unique_prefix();
    let (good, bad) = (format!("good.{prefix}.test"), format!("bad.{prefix}.test"));
    let (http_addr, https) = (free_addr(), free_addr().port());
    let pebble = Pebble::builder(http_addr.port()).start().await;
    // The CA looks for `bad` where nothing listens.
    pebble.resolve(&bad, "127.0.0.3").await;
    let teal = teal_with_acme(&prefix, &pebble, http_addr, https).start().await;
    let docker = Docker::shared();
    let web = docker
        .container(&prefix, "good")
        .service("good")
        .label("host", &good)
        .label("tls", "acme")
        .run()
        .await;
    let other = docker
        .container(&prefix, "bad")
        .service("bad")
        .label("host", &bad)
        .label("tls", "acme")
        .label("https-redirect", "true")
        .run()
        .await;
    let root = teal.dir().join("pebble-root.pem");
    std::fs::write(&root, pebble.root().await).expect("write root");
    wait_until(ISSUED, "the good name is served over HTTPS", || async {
        verified_get(https, &good, &root).await == web.body
    })
    .await;
    let failed = wait_for(ISSUED, "/status reports the failed order", || async {
        certificate(&teal, &bad).await.filter(|c| c.last_error.is_some())
    })
    .await;
    let error = failed.last_error.clone().unwrap_or_default();
    // The CA's words: it found nothing listening where the name points.
    assert!(error.contains("connection refused"), "{failed:?}");
    assert!(failed.retry_at.is_some() && failed.not_after.is_none(), "{failed:?}");
    let failing = format!("teal_certificate_failing{{name=\"{bad}\"}}");
    assert_eq!(teal.metric(&failing).await, Some(1.0));
    // Until it has a certificate the name is served over plain HTTP, not
    // redirected (the order can fail before the service is applied).
    wait_until(ISSUED, "the failing name is served over plain HTTP", || async {
        http::describe(&http::get(teal.http, &bad, "/").await) == other.body
    })
    .await;

    // Fixed: the retry gets it.
    pebble.forget(&bad).await;
    wait_until(ISSUED, "the fixed name is served over HTTPS after a retry", || async {
        verified_get(https, &bad, &root).await == other.body
    })
    .await;
    assert_eq!(teal.metric(&failing).await, Some(0.0));
    assert_eq!(verified_get(https, &good, &root).await, web.body);
}
