//! The dashboard at `/` of `--status-bind`, in a real browser (headless
//! chromium): it follows containers without a reload and loads nothing
//! from anywhere but teal. And `--status-auth`: Basic credentials for all
//! but the probes, a token for teal's own commands.

use std::time::{Duration, Instant};

use base64::Engine as _;
use teal::status::HaproxyState;

use crate::browser::Browser;
use crate::docker::{Container, Docker};
use crate::http::{self, Load};
use crate::rollout_cmd::{run_cli, teal_cli, Deploy};
use crate::teal::Teal;
use crate::util::{repo_root, unique_prefix, wait_for, wait_until, IMAGE};

const CONVERGE: Duration = Duration::from_secs(20);

/// Whether the page shows a server row for this container.
async fn shows(browser: &Browser, container: &Container) -> bool {
    let script = format!(
        "return document.querySelector('tr.server[data-container=\"{}\"]') !== null",
        container.name
    );
    browser.eval(&script).await == true
}

async fn wait_up(teal: &Teal, container: &Container) {
    wait_until(CONVERGE, &format!("{} is UP in HAProxy", container.name), || async {
        teal.report().await.is_ok_and(|report| {
            report
                .services
                .iter()
                .flat_map(|s| &s.servers)
                .any(|s| s.container_name == container.name && s.haproxy == Some(HaproxyState::Up))
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_containers_live_and_loads_only_from_teal() {
    let Some(browser) = Browser::start(1280, 900).await else {
        return;
    };
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let mut teal = Teal::builder(&prefix).start().await;
    let before = docker
        .container(&prefix, "before")
        .service("web")
        .label("host", "shop.example")
        .run()
        .await;
    wait_up(&teal, &before).await;

    let origin = format!("http://{}", teal.status);
    browser.goto(&format!("{origin}/")).await;
    // A reload would start a new page without it.
    browser.eval("window.tealLoadedOnce = true; return true").await;
    wait_until(CONVERGE, "the page shows the first container, live", || async {
        let live = browser
            .eval("return document.getElementById('connection').textContent")
            .await;
        live == "live" && shows(&browser, &before).await
    })
    .await;

    let after = docker.container(&prefix, "after").service("web").run().await;
    wait_until(CONVERGE, "the page shows the container started after it loaded", || {
        shows(&browser, &after)
    })
    .await;
    eprintln!(
        "the new container was on the page {} ms after `docker start` returned",
        after.started_at.elapsed().as_millis()
    );

    docker.stop(&before).await;
    let stopped = Instant::now();
    wait_until(CONVERGE, "the stopped container leaves the page", || async {
        !shows(&browser, &before).await
    })
    .await;
    eprintln!(
        "the stopped container left the page {} ms after `docker stop` returned",
        stopped.elapsed().as_millis()
    );
    assert_eq!(
        browser.eval("return window.tealLoadedOnce === true").await,
        true,
        "the page was reloaded"
    );

    // Every request the browser made or tried, from its network log, and
    // the page's own account of what it loaded.
    let urls = browser.requests_of(&format!("{origin}/")).await;
    let events = format!("{origin}/dashboard/events");
    assert!(urls.contains(&events), "the log has the event stream: {urls:?}");
    let elsewhere: Vec<&String> = urls.iter().filter(|u| !u.starts_with(&format!("{origin}/"))).collect();
    assert!(elsewhere.is_empty(), "requests beyond teal's listener: {elsewhere:?}");
    let mut distinct = urls.clone();
    distinct.sort();
    distinct.dedup();
    eprintln!("the page requested: {distinct:?}");
    let loaded = browser
        .eval(
            "return [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
                .map(e => e.name).filter(n => !n.startsWith(location.origin + '/'))",
        )
        .await;
    assert_eq!(loaded, serde_json::json!([]), "the page loaded from elsewhere");

    // An open event stream does not keep teal from stopping.
    let stopped = teal.stop();
    assert!(stopped.status.success(), "teal exited with {}", stopped.status);
    browser.close().await;
}

/// `htpasswd -nbB viewer s3cret`, made with the crate (`$2y$` as
/// htpasswd writes it), and a Basic header for it.
fn status_auth_file(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt").replacen("$2b$", "$2y$", 1);
    let file = dir.join("status.htpasswd");
    std::fs::write(&file, format!("# who may look\nviewer:{hash}\n")).expect("write auth file");
    let basic = base64::engine::general_purpose::STANDARD.encode("viewer:s3cret");
    (file, format!("Basic {basic}"))
}

async fn get_with(teal: &Teal, path: &str, authorization: Option<&str>) -> http::Response {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(value) = authorization {
        request += &format!("Authorization: {value}\r\n");
    }
    request += "\r\n";
    http::exchange(teal.status, &request, b"")
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_auth_asks_for_credentials_except_on_the_probes() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, basic) = status_auth_file(dir.path());
    let teal = Teal::builder(&prefix)
        .args(&["--status-auth", &file.to_string_lossy()])
        .start()
        .await;
    let web = docker.container(&prefix, "web").service("web").run().await;
    teal.wait_served_by(&web.body, CONVERGE).await;

    for path in ["/", "/status", "/metrics", "/dashboard/events"] {
        let response = get_with(&teal, path, None).await;
        assert_eq!(response.status, 401, "{path} without credentials");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Basic realm=\"teal\", charset=\"UTF-8\""),
            "{path}"
        );
        let wrong = base64::engine::general_purpose::STANDARD.encode("viewer:guess");
        let response = get_with(&teal, path, Some(&format!("Basic {wrong}"))).await;
        assert_eq!(response.status, 401, "{path} with a wrong password");
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(get_with(&teal, path, None).await.status, 200, "{path} is for probes");
    }
    // The page reads as a plain table, and may load only from teal.
    let page = wait_for(CONVERGE, "the page lists the container", || async {
        let page = get_with(&teal, "/", Some(&basic)).await;
        page.body
            .contains(&format!("data-container=\"{}\"", web.name))
            .then_some(page)
    })
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<table>"), "{}", page.body);
    let policy = page.header("content-security-policy").unwrap_or_default();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert_eq!(get_with(&teal, "/status", Some(&basic)).await.status, 200);

    // teal's own commands use the token the daemon left in its state dir.
    let (ok, output) = run_cli(&teal, &["status"]).await;
    assert!(ok && output.contains(&web.name), "{output}");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let out = teal_cli(&teal, &["status"])
        .env("TEAL_STATE_DIR", elsewhere.path())
        .output()
        .await
        .expect("teal status");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no token, no status");
    assert!(
        said.contains("has --status-auth") && said.contains("status.token"),
        "{said}"
    );
}

/// Not a check: it makes the README's picture, `docs/dashboard.png`, of the
/// page during a `teal rollout` under load, with names a reader would use
/// (so run it alone). By hand:
/// `cargo test --test integration dashboard_screenshot -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "makes docs/dashboard.png; run by hand"]
async fn dashboard_screenshot_during_a_rollout() {
    let Some(browser) = Browser::start(1280, 1040).await else {
        return;
    };
    let prefix = unique_prefix();
    let mut deploy = Deploy::new(&prefix);
    let v1 = deploy.tag_named(IMAGE, "shop:1.4.2").await;
    let v2 = deploy.tag_named(IMAGE, "shop:1.5.0").await;
    let teal = Teal::builder(&prefix).start().await;
    let label = |key: &str, value: &str| format!("{prefix}.{key}={value}");
    let web = [label("service", "web"), label("host", "shop.example,localhost")];
    let api = [label("service", "api"), label("path", "/api")];
    let bad = [label("service", "api"), label("port", "eighty")];
    for (name, labels) in [
        ("shop-web-1", &web),
        ("shop-web-2", &web),
        ("shop-api-1", &api),
        ("shop-worker-1", &bad),
    ] {
        let mut args = vec!["run", "-d", "--init", "--name", name];
        for l in labels {
            args.extend(["--label", l.as_str()]);
        }
        args.push(&v1);
        deploy.docker.run(&args).await;
    }
    teal.wait_all(CONVERGE, "web answers", |s| {
        !s.starts_with("HTTP") && !s.starts_with("error")
    })
    .await;
    let load = Load::start(teal.http, 3);
    browser.goto(&format!("http://{}/", teal.status)).await;
    let points = "return document.querySelector('#service-web polyline.requests')?.points.numberOfItems ?? 0";
    wait_until(Duration::from_secs(120), "a minute of sparkline", || async {
        browser.eval(points).await.as_u64().unwrap_or(0) >= 60
    })
    .await;
    let rollout = teal_cli(&teal, &["rollout", "web", "--image", &v2, "--drain", "5s"])
        .spawn()
        .expect("teal rollout");
    // Old and new side by side, the new ones taking requests.
    let new_serving = format!(
        "return [...document.querySelectorAll('#service-web tr.server')]
            .filter(row => row.innerText.includes('{v2}') && row.cells[6].innerText > '0').length"
    );
    wait_until(CONVERGE, "the new servers take requests beside the old", || async {
        browser.eval(&new_serving).await.as_u64().unwrap_or(0) >= 2
    })
    .await;
    let out = repo_root().join("docs/dashboard.png");
    std::fs::write(&out, browser.screenshot().await).expect("write docs/dashboard.png");
    eprintln!("wrote {}", out.display());
    let finished = rollout.wait_with_output().await.expect("teal rollout");
    let stats = load.stop().await;
    eprintln!(
        "rollout: {}; load: {} requests, {} failed",
        finished.status, stats.requests, stats.failures
    );
    browser.close().await;
}
