//! The app the rollout scenarios and the integration tests deploy: a
//! compiled binary run inside a container (the benchmark's own, as
//! `rollout serve`; the integration tests', through `app_image`). `/`
//! answers with the hostname (the container's short id); `/stream?ms=N`
//! sends the same in [`STREAM_PIECES`] pieces over N ms, ending with
//! [`STREAM_END`], so a response cut short shows.
//!
//! A bad version, for canaries, by environment: `TEAL_APP_FAIL_EVERY=N`
//! answers every Nth request 500, `TEAL_APP_DELAY_MS=N` answers each
//! request N ms late (`/stream` is neither).
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

pub const IMAGE: &str = "teal-bench-app:latest";

/// A streamed body comes in this many pieces, the last ending with [`STREAM_END`].
pub const STREAM_PIECES: u32 = 10;
pub const STREAM_END: &str = "end\n";

/// How this app answers `/`: `TEAL_APP_FAIL_EVERY` and `TEAL_APP_DELAY_MS`.
struct Answers {
    ok: String,
    failed: String,
    /// 0: never.
    fail_every: u64,
    delay: Duration,
    served: AtomicU64,
}

impl Answers {
    fn next(&self) -> &str {
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
            &self.failed
        } else {
            &self.ok
        }
    }
}

fn env_number(key: &str) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Serves HTTP/1.1 on 0.0.0.0:8080 until killed.
pub fn serve() {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let hostname: &'static str = Box::leak(hostname.trim().to_owned().into_boxed_str());
    let head = |status: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{hostname}\n",
            hostname.len() + 1
        )
    };
    let response: &'static Answers = Box::leak(Box::new(Answers {
        ok: head("200 OK"),
        failed: head("500 Internal Server Error"),
        fail_every: env_number("TEAL_APP_FAIL_EVERY"),
        delay: Duration::from_millis(env_number("TEAL_APP_DELAY_MS")),
        served: AtomicU64::new(0),
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(([0, 0, 0, 0], 8080).into()).expect("bind :8080");
        let listener = socket.listen(1024).expect("listen");
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, hostname, response));
            }
        }
    });
}

/// Answers each request on the connection until the client closes it or
/// asks to (`Connection: close`).
async fn connection(stream: TcpStream, hostname: &'static str, response: &'static Answers) {
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        let mut close = false;
        let mut target = None;
        let mut body = 0u64;
        // The request head, then its body (a POST's), read whole before the
        // answer: a server that answers and closes with a body unread resets
        // the connection, and the proxy in front sees no answer.
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
            if target.is_none() {
                target = header.split_whitespace().nth(1).map(str::to_owned);
            }
            if header == "connection: close" || header.ends_with(" http/1.0") {
                close = true;
            }
            if let Some(length) = header.strip_prefix("content-length:") {
                body = length.trim().parse().unwrap_or(0);
            }
        }
        if tokio::io::copy(&mut (&mut stream).take(body), &mut tokio::io::sink())
            .await
            .ok()
            != Some(body)
        {
            return;
        }
        let sent = match target.as_deref().and_then(stream_ms) {
            Some(ms) => send_stream(stream.get_mut(), hostname, ms).await,
            None => {
                if !response.delay.is_zero() {
                    tokio::time::sleep(response.delay).await;
                }
                stream.get_mut().write_all(response.next().as_bytes()).await
            }
        };
        if sent.is_err() || close {
            return;
        }
    }
}

/// `/stream?ms=N`: N, or 1000 without it.
fn stream_ms(target: &str) -> Option<u64> {
    let query = target.strip_prefix("/stream")?;
    let query = query.strip_prefix('?').unwrap_or(query);
    Some(
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("ms=")?.parse().ok())
            .unwrap_or(1000),
    )
}

/// The head at once, then a piece every `ms / STREAM_PIECES`: piece i is
/// `HOSTNAME i/PIECES\n`, the last followed by [`STREAM_END`].
async fn send_stream(stream: &mut TcpStream, hostname: &str, ms: u64) -> std::io::Result<()> {
    let pieces: Vec<String> = (1..=STREAM_PIECES)
        .map(|i| format!("{hostname} {i}/{STREAM_PIECES}\n"))
        .collect();
    let length = pieces.iter().map(String::len).sum::<usize>() + STREAM_END.len();
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let every = Duration::from_millis(ms) / STREAM_PIECES;
    for (i, piece) in pieces.iter().enumerate() {
        tokio::time::sleep(every).await;
        stream.write_all(piece.as_bytes()).await?;
        if i + 1 == pieces.len() {
            stream.write_all(STREAM_END.as_bytes()).await?;
        }
    }
    Ok(())
}

/// Builds the image `tag`: `base` (the test image) plus the executable
/// `exe` at `/app` and the shared libraries it links, running `command`.
/// `env`: `KEY=VALUE` pairs.
pub fn build_image(tag: &str, base: &str, exe: &Path, command: &[&str], env: &[&str]) {
    let context = std::env::temp_dir().join(format!("teal-app-image-{}", std::process::id()));
    let rootfs = context.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("build context");
    copy_into(&rootfs, exe, Path::new("/app"));
    for library in linked_libraries(exe) {
        copy_into(&rootfs, &library, &library);
    }
    let quoted: Vec<String> = command.iter().map(|arg| format!("{arg:?}")).collect();
    let mut dockerfile = format!(
        "FROM {base}\nCOPY rootfs/ /\nEXPOSE 8080\nCMD [{}]\n",
        quoted.join(", ")
    );
    for pair in env {
        dockerfile.push_str(&format!("ENV {pair}\n"));
    }
    std::fs::write(context.join("Dockerfile"), dockerfile).expect("Dockerfile");
    let previous = image_id(tag);
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(&context)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker build");
    let _ = std::fs::remove_dir_all(&context);
    assert!(
        out.status.success(),
        "docker build of {tag} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    // A rebuilt tag leaves the previous build untagged: remove it unless unchanged.
    if let Some(previous) = previous.filter(|id| Some(id) != image_id(tag).as_ref()) {
        let _ = Command::new("docker").args(["image", "rm", &previous]).output();
    }
}

pub fn image_id(tag: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", tag])
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
