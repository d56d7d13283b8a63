//! One bad thing never stops the rest. Each test puts one fault in front
//! of teal (a service HAProxy refuses, a broken certificate, a template
//! edit HAProxy refuses, a tcp port another process holds) while an
//! unrelated service is under load and changes (a replica added, the old
//! one stopped): that service loses no request, and `/status` names the
//! fault with its reason.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crate::docker::{Container, Docker};
use crate::http::{self, Load, LoadStats};
use crate::teal::Teal;
use crate::tls::{https_get, presented, same_pem, Certs};
use crate::util::{free_addr, free_port, repo_root, unique_prefix, wait_for, wait_until};

const CONVERGE: Duration = Duration::from_secs(30);
const CLIENTS: usize = 4;
/// Load keeps running this long after the old replica is stopped.
const AFTER_STOP: Duration = Duration::from_secs(2);

fn default_template() -> String {
    std::fs::read_to_string(repo_root().join("haproxy/haproxy.cfg.hbs")).expect("default template")
}

async fn report(teal: &Teal) -> Option<teal::status::StatusReport> {
    teal.report().await.ok()
}

/// Under `load`, `web` (served by `old`) gets a new replica, then `old` is
/// stopped; `between` runs once the new one is served. The load's stats.
async fn scale_and_stop(
    docker: &Docker,
    prefix: &str,
    old: &Container,
    load: Load,
    between: impl std::future::Future<Output = ()>,
) -> LoadStats {
    let new = docker.container(prefix, "web-new").service("web").run().await;
    wait_for(CONVERGE, "the new replica is served under load", || async {
        load.first_seen(&new.body)
    })
    .await;
    between.await;
    docker.stop(old).await;
    let stopped = Instant::now();
    tokio::time::sleep(AFTER_STOP).await;
    let stats = load.stop().await;
    let old_last = stats.seen.get(&old.body).and_then(|s| s.last);
    assert!(
        old_last.is_some_and(|t| t <= stopped),
        "the old replica answered after docker stop returned: not drained"
    );
    assert!(stats.seen.get(&new.body).is_some_and(|s| s.count > 0));
    stats
}

async fn web_under_load(docker: &Docker, prefix: &str, teal: &Teal) -> (Container, Load) {
    let old = docker.container(prefix, "web-old").service("web").run().await;
    teal.wait_served_by(&old.body, CONVERGE).await;
    let load = Load::start(teal.http, CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    (old, load)
}

/// Waits until `/status` lists `service` as refused; its reason.
async fn wait_service_refused(teal: &Teal, service: &str) -> String {
    wait_for(CONVERGE, "/status lists the refused service", || async {
        let report = report(teal).await?;
        let refused = report.refused.services.iter().find(|r| r.service == service)?;
        Some(refused.reason.clone())
    })
    .await
}

/// A custom template gives service `bad` the backend line `line`, which
/// HAProxy refuses with an alert holding `alert`; `bad` is left out and
/// `web` keeps changing under load.
async fn a_refused_service_leaves_the_rest_changing(what: &str, line: &str, alert: &str) {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let dir = tempfile::tempdir().expect("temp dir");
    // Labels the model accepts; the template makes HAProxy refuse the backend.
    let template = dir.path().join("haproxy.cfg.hbs");
    let custom = default_template().replacen(
        "    balance {{balance}}\n",
        &format!("    balance {{{{balance}}}}\n{{{{#if (eq name \"bad\")}}}}\n    {line}\n{{{{/if}}}}\n"),
        1,
    );
    std::fs::write(&template, custom).expect("write template");
    let teal = Teal::builder(&prefix).template(&template).start().await;
    let (old, load) = web_under_load(&docker, &prefix, &teal).await;

    let bad = docker
        .container(&prefix, "bad")
        .service("bad")
        .label("host", &format!("bad.{prefix}.test"))
        .run()
        .await;
    let reason = wait_service_refused(&teal, "bad").await;
    assert!(reason.contains(alert), "{reason}");
    let excluded = teal.wait_excluded(&bad, alert, CONVERGE).await;
    assert!(excluded.starts_with("HAProxy cannot load service bad"), "{excluded}");
    // One service left out is not teal out of step.
    let ready = http::get(teal.status, "localhost", "/readyz").await.map(|r| r.status);
    assert_eq!(ready.ok(), Some(200), "/readyz while a refused service is left out");

    let stats = scale_and_stop(&docker, &prefix, &old, load, async {}).await;
    eprintln!(
        "{what}: {} requests, {} failed, served: {}",
        stats.requests,
        stats.failures,
        stats.served()
    );
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    assert_eq!(teal.metric("teal_services_refused").await, Some(1.0));
    assert!(!teal.config().contains(line));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_haproxy_refuses_is_left_out_and_other_services_keep_changing() {
    let line = "no-such-keyword-teal";
    a_refused_service_leaves_the_rest_changing("refused service", line, line).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_naming_a_missing_file_is_left_out_like_any_refusal() {
    let line = "errorfile 503 /nonexistent/teal-missing.http";
    a_refused_service_leaves_the_rest_changing("missing file", line, "error opening file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_certificate_is_refused_alone_and_server_changes_still_flow() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let certs = Certs::new();
    let good = format!("good.{prefix}.test");
    let good_pem = certs.issue(&good).await;
    let https = free_addr();
    let teal = Teal::builder(&prefix)
        .args(&[
            "--certs",
            certs.dir().to_str().expect("utf-8 path"),
            "--https-bind",
            &https.to_string(),
        ])
        .start()
        .await;
    let (old, load) = web_under_load(&docker, &prefix, &teal).await;

    // Written elsewhere and renamed in, as the docs ask: whole, but no PEM.
    let staged = certs.dir().with_file_name("scratch").join("broken.pem");
    std::fs::write(
        &staged,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .expect("write broken pem");
    std::fs::rename(&staged, certs.dir().join("broken.pem")).expect("rename broken pem");
    let reason = wait_for(CONVERGE, "/status lists the refused certificate", || async {
        let report = report(&teal).await?;
        let refused = report.refused.certificates.iter().find(|c| c.file == "broken.pem")?;
        Some(refused.reason.clone())
    })
    .await;
    assert!(reason.contains("unable to load certificate"), "{reason}");

    let stats = scale_and_stop(&docker, &prefix, &old, load, async {}).await;
    eprintln!(
        "broken certificate: {} requests, {} failed, served: {}",
        stats.requests,
        stats.failures,
        stats.served()
    );
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    let shown = presented(https.port(), &good).await.expect("a certificate over HTTPS");
    assert!(same_pem(&shown, &good_pem), "the good certificate is no longer served");
    let body = https_get(https.port(), &good).await;
    assert!(body.starts_with(&format!("{prefix}-web-new")), "{body}");
    assert_eq!(teal.metric("teal_certificates_refused").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_template_edit_haproxy_refuses_leaves_server_changes_flowing() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("haproxy.cfg.hbs");
    let good = default_template();
    std::fs::write(&template, &good).expect("write template");
    let teal = Teal::builder(&prefix).template(&template).start().await;
    let (old, load) = web_under_load(&docker, &prefix, &teal).await;

    // Renders, but HAProxy refuses it whatever the services.
    let refused = good.replacen("defaults\n", "defaults\n    no-such-keyword-teal\n", 1);
    std::fs::write(&template, refused).expect("write template");
    let reason = wait_for(CONVERGE, "/status shows the refused template edit", || async {
        report(&teal).await?.refused.rendering
    })
    .await;
    assert!(reason.contains("no-such-keyword-teal"), "{reason}");

    let stats = scale_and_stop(&docker, &prefix, &old, load, async {}).await;
    eprintln!(
        "refused template edit: {} requests, {} failed, served: {}",
        stats.requests,
        stats.failures,
        stats.served()
    );
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    assert!(!teal.config().contains("no-such-keyword-teal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tcp_port_another_process_holds_never_pauses_the_http_frontend() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let port = free_port();
    let holder = TcpListener::bind(("127.0.0.1", port)).expect("hold the tcp port");
    let teal = Teal::builder(&prefix).start().await;
    let (old, load) = web_under_load(&docker, &prefix, &teal).await;

    let db = |name: &'static str| {
        docker
            .container(&prefix, name)
            .service("db")
            .label("mode", "tcp")
            .label("listen", &port.to_string())
            .label("port", "8080")
            .run()
    };
    let _db1 = db("db1").await;
    let reason = wait_service_refused(&teal, "db").await;
    assert!(
        reason.starts_with(&format!("port {port} is held by another process")),
        "{reason}"
    );
    // More Docker events while the port is held: a second db replica (a
    // changed input, tried again) and web's scale-up and stop.
    let stats = scale_and_stop(&docker, &prefix, &old, load, async {
        let db2 = db("db2").await;
        teal.wait_excluded(&db2, "is held by another process", CONVERGE).await;
    })
    .await;
    eprintln!(
        "held tcp port: {} requests, {} failed, served: {}",
        stats.requests,
        stats.failures,
        stats.served()
    );
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    let failed_reloads = teal
        .metrics()
        .await
        .get("teal_reloads_total{result=\"failed\"}")
        .copied()
        .unwrap_or(0.0);
    assert_eq!(
        failed_reloads, 0.0,
        "HAProxy was signalled with a config it could not load"
    );

    // The port is freed; db's next change is tried again and served.
    drop(holder);
    let _db3 = db("db3").await;
    let tcp: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_until(CONVERGE, "db is served once the port is free", || async {
        http::describe(&http::get(tcp, "any", "/").await).starts_with(&format!("{prefix}-db"))
    })
    .await;
}
