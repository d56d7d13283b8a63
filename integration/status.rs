//! What an operator sees: `/status`, `/metrics`, `/healthz` and `teal status`
//! describe the running stack, a left-out container with its reason, and a
//! config HAProxy rejected.

use std::process::Command;
use std::time::Duration;

use teal::model::ServerState;
use teal::status::HaproxyState;

use crate::docker::Docker;
use crate::http;
use crate::teal::Teal;
use crate::util::{free_addr, repo_root, unique_prefix, wait_for, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metrics_and_table_describe_the_stack() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let haproxy_metrics = free_addr();
    let teal = Teal::builder(&prefix)
        .args(&["--haproxy-metrics-bind", &haproxy_metrics.to_string()])
        .start()
        .await;
    let good = docker.container(&prefix, "good").service("web").run().await;
    let bad = docker
        .container(&prefix, "bad")
        .service("web")
        .label("port", "abc")
        .run()
        .await;
    teal.wait_served_by(&good.body, CONVERGE).await;

    let report = wait_for(
        CONVERGE,
        "/status shows the server UP and the bad one left out",
        || async {
            let report = teal.report().await.ok()?;
            let up = report
                .services
                .iter()
                .flat_map(|s| &s.servers)
                .any(|s| s.haproxy == Some(HaproxyState::Up));
            (up && !report.excluded.is_empty()).then_some(report)
        },
    )
    .await;
    assert!(report.docker.connected && report.haproxy_running);
    let web = report.services.iter().find(|s| s.name == "web").expect("service web");
    assert_eq!(web.servers.len(), 1);
    assert_eq!(
        (web.servers[0].container_name.as_str(), web.servers[0].state),
        (good.name.as_str(), ServerState::Ready)
    );
    let excluded = &report.excluded[0];
    assert_eq!(excluded.container_name, bad.name);
    assert!(
        excluded.reason.contains(&format!("{prefix}.port")),
        "{}",
        excluded.reason
    );
    assert!(report.last_reload.as_ref().is_some_and(|r| r.ok));

    let m = teal.metrics().await;
    assert_eq!(m.get("teal_docker_connected"), Some(&1.0));
    assert_eq!(m.get("teal_servers{service=\"web\",state=\"ready\"}"), Some(&1.0));
    assert!(
        m.get("teal_reloads_total{result=\"ok\"}").is_some_and(|n| *n >= 1.0),
        "{m:?}"
    );
    assert!(
        m.get("teal_docker_events_total{action=\"start\"}")
            .is_some_and(|n| *n >= 1.0),
        "{m:?}"
    );
    assert!(m.contains_key("teal_event_to_apply_seconds_count"));

    // HAProxy's own exporter counts the requests the server answered.
    let server_responses = "haproxy_server_http_responses_total{proxy=\"web\",server=";
    let promex = wait_for(CONVERGE, "HAProxy's exporter counts the server's 2xx", || async {
        let body = http::get(haproxy_metrics, "localhost", "/metrics").await.ok()?.body;
        body.lines()
            .any(|l| l.starts_with(server_responses) && l.contains("code=\"2xx\"") && !l.ends_with(" 0"))
            .then_some(body)
    })
    .await;
    assert!(
        promex.contains("haproxy_backend_response_time_average_seconds"),
        "{promex}"
    );

    let healthz = http::get(teal.status, "localhost", "/healthz")
        .await
        .expect("GET /healthz");
    assert_eq!(healthz.status, 200, "{}", healthz.body);

    let table = Command::new(env!("CARGO_BIN_EXE_teal"))
        .args(["status", "--status-bind", &teal.status.to_string()])
        .output()
        .expect("teal status");
    let table = String::from_utf8_lossy(&table.stdout);
    let row = table
        .lines()
        .find(|l| l.contains(&good.name))
        .unwrap_or_else(|| panic!("no row for good:\n{table}"));
    assert!(
        row.starts_with("web") && row.contains("ready") && row.contains("UP"),
        "{table}"
    );
    assert!(table.contains(&format!("{}: label {prefix}.port", bad.name)), "{table}");
    assert!(!table.contains('\x1b'), "no colours when not a terminal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_haproxy_rejects_shows_in_status_and_metrics() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let dir = tempfile::tempdir().expect("temp dir");
    let good = default_template();
    let template = template_file(dir.path(), &good);
    let teal = Teal::builder(&prefix).template(&template).start().await;
    let a = docker.container(&prefix, "a").service("web").run().await;
    teal.wait_served_by(&a.body, CONVERGE).await;

    // Renders fine, but HAProxy does not know the keyword.
    let rejected = good.replacen("defaults\n", "defaults\n    no-such-keyword-teal\n", 1);
    std::fs::write(&template, rejected).expect("write template");
    let report = wait_for(CONVERGE, "/status shows the rejected config", || async {
        let report = teal.report().await.ok()?;
        report.last_reload.clone().filter(|r| !r.ok).map(|r| (report, r))
    })
    .await;
    let (_, last) = report;
    assert!(
        last.error
            .as_deref()
            .unwrap_or_default()
            .contains("no-such-keyword-teal"),
        "{last:?}"
    );
    assert!(
        !teal.config().contains("no-such-keyword-teal"),
        "a rejected config reached disk"
    );
    wait_until(CONVERGE, "the validation failure is counted", || async {
        teal.metrics()
            .await
            .get("teal_config_validation_failures_total")
            .is_some_and(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(
        teal.sample(10).await,
        vec![a.body.clone(); 10],
        "the last good config keeps serving"
    );
}

/// A server change goes to the running HAProxy through the runtime API and
/// the file is checked only once changes pause: a file HAProxy would not
/// load (here, from a custom template's server line) is then reported,
/// while HAProxy keeps serving the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_change_whose_file_does_not_load_is_reported_and_keeps_serving() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let dir = tempfile::tempdir().expect("temp dir");
    let good = default_template();
    let server_line = good
        .lines()
        .find(|l| l.trim_start().starts_with("server {{name}}"))
        .expect("the default template's server line");
    // Only a server with a maxconn gets the unknown keyword.
    let custom = good.replacen(
        server_line,
        &format!("{server_line}{{{{#if maxconn}}}} no-such-keyword-teal{{{{/if}}}}"),
        1,
    );
    let template = template_file(dir.path(), &custom);
    let teal = Teal::builder(&prefix).template(&template).start().await;
    let a = docker.container(&prefix, "a").service("web").run().await;
    teal.wait_served_by(&a.body, CONVERGE).await;
    // HAProxy serves a just before teal counts the reload that added it.
    wait_until(CONVERGE, "a's reload is recorded", || async {
        let report = teal.report().await;
        report.is_ok_and(|r| r.last_reload.is_some_and(|l| l.outcome.as_deref() == Some("reloaded")))
    })
    .await;
    let reloads_before = teal.reloads().await;

    let b = docker
        .container(&prefix, "b")
        .service("web")
        .label("maxconn", "5")
        .run()
        .await;
    teal.wait_served_by(&b.body, CONVERGE).await;
    let report = wait_for(CONVERGE, "/status shows the file that does not load", || async {
        let report = teal.report().await.ok()?;
        report.last_reload.clone().filter(|r| !r.ok)
    })
    .await;
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("no-such-keyword-teal"),
        "{report:?}"
    );
    assert!(
        teal.metrics()
            .await
            .get("teal_config_validation_failures_total")
            .is_some_and(|n| *n >= 1.0),
        "the failed check is counted"
    );
    assert_eq!(teal.reloads().await, reloads_before, "b joined without a reload");
    teal.wait_served_by(&a.body, CONVERGE).await;
    teal.wait_served_by(&b.body, CONVERGE).await;
}

fn default_template() -> String {
    std::fs::read_to_string(repo_root().join("haproxy/haproxy.cfg.hbs")).expect("default template")
}

/// `text` as `haproxy.cfg.hbs` in `dir`, for `--template`.
fn template_file(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("haproxy.cfg.hbs");
    std::fs::write(&path, text).expect("write template");
    path
}
