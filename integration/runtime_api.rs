//! A server added through HAProxy's runtime API behaves like one from the
//! config: its idle connections are kept and reused. HAProxy 2.6 gives a
//! dynamic server no idle pool unless `add server` asks for one, and then
//! every request after a scale-up or a rollout opens a new connection.
//!
//! The app is in this process (busybox httpd closes every connection): the
//! containers only carry the labels, on the host network, so HAProxy's
//! servers are 127.0.0.1:<port of an app below>.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::docker::{Container, Docker};
use crate::teal::Teal;
use crate::util::{free_port, unique_prefix, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_added_at_runtime_reuses_idle_connections() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).start().await;

    // The first server makes the service, so it is in the config file.
    let first = KeepAliveApp::start("first").await;
    let a = labels_only(&docker, &prefix, "a", first.port).await;
    teal.wait_served_by("first", CONVERGE).await;
    // HAProxy serves `first` just before teal counts the reload that added it.
    wait_until(CONVERGE, "the reload that added a is recorded", || async {
        let report = teal.report().await;
        report.is_ok_and(|r| r.last_reload.is_some_and(|l| l.outcome.as_deref() == Some("reloaded")))
    })
    .await;
    let reloads = teal.reloads().await;
    // The second joins an existing service: `add server`, no reload.
    let second = KeepAliveApp::start("second").await;
    let _b = labels_only(&docker, &prefix, "b", second.port).await;
    teal.wait_served_by("second", CONVERGE).await;
    assert_eq!(
        teal.reloads().await,
        reloads,
        "the second server came with a reload, not through the runtime API"
    );
    docker.stop(&a).await;
    teal.wait_only(&["second"], CONVERGE).await;
    // A reload since would have made `second` a server from the config file.
    assert_eq!(
        teal.reloads().await,
        reloads,
        "draining the first server reloaded HAProxy"
    );

    let before = second.connections.load(Ordering::SeqCst);
    let bodies = requests_on_one_connection(teal.http, 50).await;
    assert!(bodies.iter().all(|b| b == "second"), "answers: {bodies:?}");
    let opened = second.connections.load(Ordering::SeqCst) - before;
    assert!(
        opened <= 2,
        "50 keep-alive requests opened {opened} connections to the runtime-added server"
    );
}

/// A container of service `web` that routes to `127.0.0.1:port`; its own
/// httpd listens on another port and is never asked.
async fn labels_only(docker: &Docker, prefix: &str, name: &str, port: u16) -> Container {
    let unused = format!("PORT={}", free_port());
    docker
        .container(prefix, name)
        .service("web")
        .args(&["--network", "host", "-e", &unused])
        .label("port", &port.to_string())
        .run()
        .await
}

/// An HTTP/1.1 server on loopback that keeps connections alive, answers
/// every request with `body` and counts the connections it accepted.
struct KeepAliveApp {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAliveApp {
    async fn start(body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer_each_request(stream, body));
            }
        });
        Self {
            port,
            connections,
            task,
        }
    }
}

impl Drop for KeepAliveApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer_each_request(stream: TcpStream, body: &str) {
    let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // A request head ends with an empty line; health checks send one too.
        loop {
            line.clear();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) if line.trim_end().is_empty() => break,
                Ok(_) => {}
            }
        }
        if stream.get_mut().write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// `n` GETs one after another on one client connection; their bodies.
async fn requests_on_one_connection(addr: std::net::SocketAddr, n: usize) -> Vec<String> {
    let mut stream = BufReader::new(TcpStream::connect(addr).await.expect("connect to HAProxy"));
    let mut bodies = Vec::new();
    for _ in 0..n {
        let request = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        stream.get_mut().write_all(request.as_bytes()).await.expect("send");
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            stream.read_line(&mut line).await.expect("response head");
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(value) = header.strip_prefix("content-length:") {
                length = value.trim().parse().expect("content-length");
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.expect("body");
        bodies.push(String::from_utf8_lossy(&body).into_owned());
    }
    bodies
}

/// The commands `plan(a, b)` gives, sent to a real HAProxy running `a`'s
/// config, leave the server table of `b` (`show servers state`): addresses,
/// weights and states. Then a second plan takes servers out of drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_applied_to_haproxy_gives_the_next_server_table() {
    use teal::model::ServerState::{Drain, Maint, Ready};
    let Some(haproxy) = RealHaproxy::start(&plan_snapshot(&[
        ("a", 2, 100, Ready),
        ("b", 2, 100, Ready),
        ("c", 2, 100, Ready),
        ("d", 2, 100, Ready),
    ]))
    .await
    else {
        return;
    };
    let a = haproxy.snapshot.clone();
    // Re-weighted, drained, removed, moved; added ready, in maintenance, draining.
    let b = plan_snapshot(&[
        ("a", 2, 50, Ready),
        ("b", 2, 100, Drain),
        ("d", 3, 100, Ready),
        ("e", 2, 100, Ready),
        ("f", 2, 100, Maint),
        ("g", 2, 100, Drain),
    ]);
    let c = plan_snapshot(&[
        ("a", 2, 50, Ready),
        ("b", 2, 100, Ready),
        ("d", 3, 100, Ready),
        ("e", 2, 100, Ready),
        ("f", 2, 100, Ready),
        ("g", 2, 100, Ready),
    ]);
    for (before, after) in [(&a, &b), (&b, &c)] {
        let commands = teal::reconcile::plan(before, after).expect("only servers change");
        if let Err(refused) = teal::apply::run_commands(&haproxy.admin_socket, &commands).await {
            panic!("HAProxy refused {refused}; all commands: {commands:#?}");
        }
        assert_eq!(haproxy.table().await, expected_table(after));
    }
}

type ServerTable = std::collections::BTreeMap<String, (String, u16, &'static str, Option<u16>)>;

/// Per server: address, port, admin state, and the weight unless draining
/// (a drained server takes no new requests whatever its weight).
fn expected_table(snapshot: &teal::model::Snapshot) -> ServerTable {
    use teal::model::ServerState;
    snapshot.services[0]
        .servers
        .iter()
        .map(|s| {
            let state = match s.state {
                ServerState::Ready => "ready",
                ServerState::Drain => "drain",
                ServerState::Maint => "maint",
            };
            let weight = (s.state != ServerState::Drain).then_some(s.weight);
            (s.name.clone(), (s.address.to_string(), s.port, state, weight))
        })
        .collect()
}

/// Service `web` with servers `(name, last octet of 127.0.0.x, weight, state)`,
/// all on one port nobody answers: checks fail, which the admin state ignores.
fn plan_snapshot(servers: &[(&str, u8, u16, teal::model::ServerState)]) -> teal::model::Snapshot {
    use teal::model::labels::{Balance, HealthCheck, Mode, ServiceName};
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    let port = *PORT.get_or_init(free_port);
    let servers = servers
        .iter()
        .map(|&(name, octet, weight, state)| teal::model::Server {
            name: name.into(),
            address: std::net::IpAddr::from([127, 0, 0, octet]),
            port,
            weight,
            maxconn: None,
            state,
            reason: None,
            slot: None,
            drained: false,
            container_id: teal::model::ContainerId(format!("{name:0<64}")),
            container_name: name.into(),
            image: "app:1".into(),
            node: None,
        })
        .collect();
    teal::model::Snapshot {
        services: vec![std::sync::Arc::new(teal::model::Service {
            name: ServiceName::parse("web").unwrap(),
            mode: Mode::Http,
            hosts: Vec::new(),
            path: None,
            listen: None,
            balance: Balance::Roundrobin,
            health: HealthCheck {
                path: None,
                interval_ms: 500,
            },
            https_redirect: false,
            acme: false,
            hold: None,
            servers,
            slots: None,
            controls: Default::default(),
            canary: None,
        })],
        excluded: Vec::new(),
    }
}

/// HAProxy on the default template's rendering of `snapshot`, stopped on drop.
struct RealHaproxy {
    dir: tempfile::TempDir,
    admin_socket: std::path::PathBuf,
    snapshot: teal::model::Snapshot,
}

impl RealHaproxy {
    async fn start(snapshot: &teal::model::Snapshot) -> Option<Self> {
        if std::process::Command::new("haproxy").arg("-v").output().is_err() {
            crate::util::skip("no haproxy binary");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("teal-plan-")
            .tempdir()
            .expect("tempdir");
        let admin_socket = dir.path().join("haproxy.sock");
        let state_file = dir.path().join("server-state");
        std::fs::write(&state_file, "").expect("state file");
        let hold_script = dir.path().join("hold.lua");
        std::fs::write(&hold_script, teal::render::HOLD_SCRIPT).expect("hold script");
        std::fs::create_dir(dir.path().join("hold")).expect("hold sockets dir");
        let settings = teal::render::ContextSettings {
            http_bind: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            preview_bind: None,
            preview_https_bind: None,
            haproxy_metrics_bind: None,
            admin_socket: admin_socket.display().to_string(),
            server_state_file: state_file.display().to_string(),
            label_prefix: "teal".into(),
            tls: None,
            hold: teal::render::HoldSettings::new(
                &hold_script,
                &dir.path().join("hold"),
                std::time::Duration::from_secs(15),
            ),
            maintenance_pages: dir.path().join("maintenance").display().to_string(),
        };
        let text = teal::render::Renderer::new(teal::render::DEFAULT_TEMPLATE)
            .unwrap()
            .render(&teal::render::Context::new(&settings, snapshot))
            .expect("render");
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, text).expect("write config");
        std::process::Command::new("haproxy")
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .status()
            .expect("start haproxy");
        let started = Self {
            dir,
            admin_socket,
            snapshot: snapshot.clone(),
        };
        wait_until(CONVERGE, "haproxy answers on its admin socket", || async {
            teal::apply::admin_command(&started.admin_socket, "show info")
                .await
                .is_ok()
        })
        .await;
        Some(started)
    }

    /// `show servers state` of backend web.
    async fn table(&self) -> ServerTable {
        let answer = teal::apply::admin_command(&self.admin_socket, "show servers state web")
            .await
            .expect("show servers state");
        let mut table = ServerTable::new();
        for line in answer
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            // The hold's backup server is the template's, not the plan's.
            if f[3] == "teal_hold" {
                continue;
            }
            let admin: u32 = f[6].parse().unwrap();
            let weight: u16 = f[7].parse().unwrap();
            // Forced maintenance (0x01), or disabled in the config (0x04)
            // and never set ready since; drain (0x08) or its config flag.
            let state = if admin & 0x05 != 0 {
                "maint"
            } else if admin & 0x18 != 0 {
                "drain"
            } else {
                "ready"
            };
            let weight = (state != "drain").then_some(weight);
            table.insert(
                f[3].to_owned(),
                (f[4].to_owned(), f[18].parse().unwrap(), state, weight),
            );
        }
        table
    }
}

impl Drop for RealHaproxy {
    fn drop(&mut self) {
        // Daemonised: found by its config path, which only this test uses.
        let pids = crate::util::pids_mentioning(&self.dir.path().display().to_string());
        crate::util::terminate(&pids, Duration::from_secs(2));
    }
}
