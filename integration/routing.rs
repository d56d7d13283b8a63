//! Routing vocabulary end to end: host and path rules on the shared HTTP
//! frontend (most specific first), 404 for no service and 503 for a known
//! service with nothing to serve it, tcp services and their port conflicts,
//! per-service settings, and the network choice of a container on two networks.

use std::net::SocketAddr;
use std::process::Command as StdCommand;
use std::time::Duration;

use crate::docker::{Container, Docker};
use crate::http;
use crate::teal::Teal;
use crate::util::{free_port, unique_prefix, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);

/// What `GET host path` on teal's HTTP frontend gives: the body on 200, else
/// `HTTP <status>`.
async fn served(teal: &Teal, host: &str, path: &str) -> String {
    http::describe(&http::get(teal.http, host, path).await)
}

async fn wait_served(teal: &Teal, host: &str, path: &str, want: &str) {
    wait_until(CONVERGE, &format!("{host}{path} answers {want:?}"), || async {
        served(teal, host, path).await == want
    })
    .await;
}

/// Makes the container's httpd answer `path` (a directory) with its body too.
async fn serve_path(docker: &Docker, c: &Container, path: &str) {
    let script = format!("mkdir -p /www{path} && cp /www/index.html /www{path}/index.html");
    docker.exec(c, &["sh", "-c", &script]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_path_rules_most_specific_first_and_404_otherwise() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).start().await;
    let site_host = format!("site.{prefix}.test");

    let site = docker
        .container(&prefix, "site")
        .service("site")
        .label("host", &site_host)
        .run()
        .await;
    let api = docker
        .container(&prefix, "api")
        .service("api")
        .label("host", &site_host)
        .label("path", "/api")
        .run()
        .await;
    let api_v2 = docker
        .container(&prefix, "apiv2")
        .service("apiv2")
        .label("host", &site_host)
        .label("path", "/api/v2/")
        .run()
        .await;
    let docs = docker
        .container(&prefix, "docs")
        .service("docs")
        .label("path", "/docs")
        .run()
        .await;
    serve_path(&docker, &api, "/api").await;
    serve_path(&docker, &api_v2, "/api/v2").await;
    serve_path(&docker, &docs, "/docs").await;

    wait_served(&teal, &site_host, "/", &site.body).await;
    wait_served(&teal, &site_host, "/api/", &api.body).await;
    wait_served(&teal, &site_host, "/api/v2/", &api_v2.body).await;
    // Host and path beat path alone; path alone serves any host.
    wait_served(&teal, "elsewhere.test", "/docs/", &docs.body).await;
    assert_eq!(
        served(&teal, &site_host, "/docs/").await,
        "HTTP 404",
        "site's httpd has no /docs"
    );
    // Host matching ignores case and the port.
    let shouting = format!("SITE.{prefix}.TEST:8080");
    assert_eq!(served(&teal, &shouting, "/").await, site.body);
    // A prefix matches whole segments only.
    assert_ne!(served(&teal, &site_host, "/apixyz").await, api.body);

    // No service for this host and no default service: teal's own 404.
    let response = http::get(teal.http, "nobody.test", "/").await.expect("GET");
    assert_eq!(response.status, 404);
    assert!(response.body.contains("teal: no service matches"), "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_service_with_nothing_ready_answers_503() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).start().await;
    let sick_host = format!("sick.{prefix}.test");
    let lost_host = format!("lost.{prefix}.test");

    // Its HEALTHCHECK never passes: the server stays in maintenance.
    let _sick = docker
        .container(&prefix, "sick")
        .service("sick")
        .label("host", &sick_host)
        .args(&[
            "--health-cmd",
            "false",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ])
        .run()
        .await;
    // Names a network it is not on: left out, but its service keeps its route.
    let lost = docker
        .container(&prefix, "lost")
        .service("lost")
        .label("host", &lost_host)
        .label("network", &format!("{prefix}-nowhere"))
        .run()
        .await;
    wait_served(&teal, &sick_host, "/", "HTTP 503").await;
    wait_served(&teal, &lost_host, "/", "HTTP 503").await;
    teal.wait_excluded(&lost, "not attached to network", CONVERGE).await;
    assert_eq!(served(&teal, "nobody.test", "/").await, "HTTP 404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_services_and_their_port_conflicts() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).start().await;
    let listen = free_port();
    let listen_text = listen.to_string();
    let tcp_addr = SocketAddr::from(([127, 0, 0, 1], listen));

    // httpd behind a tcp frontend: HAProxy passes the bytes through.
    let db = docker
        .container(&prefix, "db")
        .service("db")
        .label("mode", "tcp")
        .label("listen", &listen_text)
        .label("port", "8080")
        .run()
        .await;
    wait_until(CONVERGE, "the tcp frontend passes a request through", || async {
        http::describe(&http::get(tcp_addr, "any", "/").await) == db.body
    })
    .await;

    // Same port, later: left out, the first keeps it.
    let rival = docker
        .container(&prefix, "rival")
        .service("rival")
        .label("mode", "tcp")
        .label("listen", &listen_text)
        .run()
        .await;
    // teal's own HTTP port: left out too.
    let http_port = teal.http.port().to_string();
    let squatter = docker
        .container(&prefix, "squatter")
        .service("squatter")
        .label("mode", "tcp")
        .label("listen", &http_port)
        .run()
        .await;
    // A plain http service after them: once it is served, the config with
    // all three was applied (nothing failed to reload).
    let web = docker.container(&prefix, "web").service("web").run().await;
    teal.wait_served_by(&web.body, CONVERGE).await;
    teal.wait_excluded(&rival, "already taken by tcp service db", CONVERGE)
        .await;
    teal.wait_excluded(&squatter, "teal's own listeners", CONVERGE).await;
    let config = teal.config();
    assert!(
        !config.contains("teal_tcp_rival") && !config.contains("teal_tcp_squatter"),
        "{config}"
    );
    for _ in 0..5 {
        assert_eq!(http::describe(&http::get(tcp_addr, "any", "/").await), db.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_health_path_balance_and_limits_take_effect() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).start().await;
    let web_host = format!("web.{prefix}.test");
    let checked_host = format!("checked.{prefix}.test");

    let idle = docker
        .container(&prefix, "idle")
        .service("web")
        .label("host", &web_host)
        .label("weight", "0")
        .label("balance", "leastconn")
        .label("maxconn", "5")
        .label("health.interval", "2s")
        .run()
        .await;
    let busy = docker
        .container(&prefix, "busy")
        .service("web")
        .label("host", &web_host)
        .label("balance", "leastconn")
        .label("maxconn", "5")
        .label("health.interval", "2s")
        .label("health.path", "/")
        .run()
        .await;
    // Its check asks for a page httpd does not have: the server is DOWN.
    let _failing = docker
        .container(&prefix, "failing")
        .service("checked")
        .label("host", &checked_host)
        .label("health.path", "/no-such-page")
        .run()
        .await;

    wait_served(&teal, &web_host, "/", &busy.body).await;
    wait_served(&teal, &checked_host, "/", "HTTP 503").await;
    for _ in 0..20 {
        assert_eq!(
            served(&teal, &web_host, "/").await,
            busy.body,
            "weight 0 gets no traffic"
        );
    }
    let config = teal.config();
    let web = config.split("\nbackend web\n").nth(1).expect("backend web");
    assert!(web.contains("balance leastconn"), "{web}");
    assert!(web.contains("option httpchk GET /"), "{web}");
    assert!(web.contains("default-server check inter 2000ms"), "{web}");
    assert!(web.contains(" maxconn 5\n"), "{web}");
    assert!(web.contains(&format!("{}-{} ", idle.name, &idle.id[..8])), "{web}");
}

/// Networks a test created, removed on drop (after the containers on them:
/// declare this before the `Docker` guard).
struct Networks(Vec<String>);

impl Drop for Networks {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = StdCommand::new("docker").args(["network", "rm", name]).output();
        }
    }
}

async fn ip_on(docker: &Docker, c: &Container, network: &str) -> String {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    docker.run(&["inspect", "-f", &format, &c.id]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_on_two_networks_is_reached_on_the_one_it_names() {
    let prefix = unique_prefix();
    let (front, back) = (format!("{prefix}-front"), format!("{prefix}-back"));
    let mut networks = Networks(Vec::new());
    let docker = Docker::shared();
    for name in [&front, &back] {
        docker.run(&["network", "create", name]).await;
        networks.0.push(name.clone());
    }
    let teal = Teal::builder(&prefix).start().await;

    let named = docker
        .container(&prefix, "named")
        .service("web")
        .label("network", &back)
        .args(&["--network", &front])
        .run()
        .await;
    let unnamed = docker
        .container(&prefix, "unnamed")
        .service("other")
        .label("host", &format!("other.{prefix}.test"))
        .args(&["--network", &front])
        .run()
        .await;
    // Only on `front` so far: `named` is left out for now.
    teal.wait_excluded(&named, "not attached to network", CONVERGE).await;
    docker.run(&["network", "connect", &back, &named.id]).await;
    docker.run(&["network", "connect", &back, &unnamed.id]).await;

    teal.wait_served_by(&named.body, CONVERGE).await;
    let back_ip = ip_on(&docker, &named, &back).await;
    let front_ip = ip_on(&docker, &named, &front).await;
    assert!(!back_ip.is_empty() && back_ip != front_ip, "{back_ip} / {front_ip}");
    // A server joining a service reaches HAProxy through its runtime API
    // first; haproxy.cfg follows once `haproxy -c` has passed.
    wait_until(CONVERGE, "haproxy.cfg follows the runtime API", || async {
        teal.config().contains(&format!(" {back_ip}:8080 "))
    })
    .await;
    let config = teal.config();
    assert!(
        config.contains(&format!(" {back_ip}:8080 ")),
        "server on {back}'s address:\n{config}"
    );
    assert!(!config.contains(&format!(" {front_ip}:8080 ")), "{config}");

    // On two networks without the label, teal cannot choose: left out.
    teal.wait_excluded(&unnamed, "several networks", CONVERGE).await;
    drop(teal);
    drop(docker);
    drop(networks);
}
