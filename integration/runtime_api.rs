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
        let report = teal::status::fetch(teal.status).await;
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
