//! The app the rollout scenarios deploy: this benchmark's own binary run as
//! `rollout serve` inside a container, answering every request with its
//! hostname (the container's short id).
//!
//! Why not the test image's busybox httpd: it forks a process per connection
//! and listens with a backlog of 9, so at 1,000 connections a second it drops
//! SYNs even in steady state, and HAProxy's 500 ms connect retries then decide
//! the tail. That measures busybox; a typical app server keeps connections
//! alive and listens with a backlog in the hundreds, as this one does.
//!
//! As PID 1 it installs no signal handler, so like busybox it ignores SIGTERM
//! and dies only on `docker stop`'s SIGKILL; under `--init` it dies at once.

use std::path::Path;
use std::process::Command;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

pub const IMAGE: &str = "teal-bench-app:latest";

/// Serves HTTP/1.1 on 0.0.0.0:8080 until killed.
pub fn serve() {
    let body = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let response: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(([0, 0, 0, 0], 8080).into()).expect("bind :8080");
        let listener = socket.listen(1024).expect("listen");
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, response));
            }
        }
    });
}

/// Answers each request on the connection until the client closes it or
/// asks to (`Connection: close`).
async fn connection(stream: TcpStream, response: &'static str) {
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        let mut close = false;
        // The request head; bodies are not expected (GET and health checks).
        loop {
            line.clear();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if header == "connection: close" || header.ends_with(" http/1.0") {
                close = true;
            }
        }
        if stream.get_mut().write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// Builds [`IMAGE`]: the test image plus this binary and the shared
/// libraries it links, with `rollout serve` as its command. Rebuilt on every
/// run so it always holds the binary being measured.
pub fn build_image() {
    let exe = std::env::current_exe().expect("own executable");
    let context = std::env::temp_dir().join(format!("teal-bench-app-{}", std::process::id()));
    let rootfs = context.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("build context");
    copy_into(&rootfs, &exe, Path::new("/app"));
    for library in linked_libraries(&exe) {
        copy_into(&rootfs, &library, &library);
    }
    let dockerfile = format!(
        "FROM {}\nCOPY rootfs/ /\nEXPOSE 8080\nCMD [\"/app\", \"serve\"]\n",
        super::stack::IMAGE
    );
    std::fs::write(context.join("Dockerfile"), dockerfile).expect("Dockerfile");
    let previous = image_id();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(&context)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker build");
    let _ = std::fs::remove_dir_all(&context);
    assert!(
        out.status.success(),
        "docker build of {IMAGE} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    // The last run's build is left untagged: remove it unless unchanged.
    if let Some(previous) = previous.filter(|id| Some(id) != image_id().as_ref()) {
        let _ = Command::new("docker").args(["image", "rm", &previous]).output();
    }
}

fn image_id() -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", IMAGE])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn copy_into(rootfs: &Path, from: &Path, to: &Path) {
    let target = rootfs.join(to.strip_prefix("/").expect("absolute path"));
    std::fs::create_dir_all(target.parent().expect("parent")).expect("rootfs dir");
    std::fs::copy(from, &target).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
}

/// The absolute paths `ldd` lists for a binary, the loader included.
fn linked_libraries(exe: &Path) -> Vec<std::path::PathBuf> {
    let out = Command::new("ldd").arg(exe).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
        .map(Into::into)
        .collect()
}
