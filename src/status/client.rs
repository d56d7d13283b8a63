//! Reads a running teal's `/status` (for `teal status`, `rollout` and `switch`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::token_path;
use super::StatusReport;

/// GETs `/status` from the daemon at `addr`, with the token it leaves in
/// `state_dir` when it has `--status-auth`.
pub async fn fetch(addr: SocketAddr, state_dir: &Path) -> anyhow::Result<StatusReport> {
    let token = std::fs::read_to_string(token_path(state_dir)).ok();
    let (status_line, body) = get(addr, "/status", token.as_deref()).await?;
    match status_line.split_whitespace().nth(1) {
        Some("200") => {}
        Some("401") => anyhow::bail!(
            "teal at {addr} has --status-auth and this command found no token for it: give it the daemon's \
             --state-dir and run it as a user who can read {} (or from the daemon's container)",
            token_path(state_dir).display()
        ),
        _ => anyhow::bail!("teal at {addr} answered {status_line}"),
    }
    serde_json::from_str(&body).context("teal's /status answer is not the expected JSON (a different teal version?)")
}

/// The status line and the body.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<(String, String)> {
    let authorization = token
        .map(|token| format!("Authorization: Bearer {}\r\n", token.trim()))
        .unwrap_or_default();
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from teal at {addr} within 10s"))?
        .with_context(|| {
            format!("cannot reach teal's status endpoint at {addr}: is `teal run` running there? (--status-bind)")
        })?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").context("malformed HTTP answer")?;
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    Ok((status_line, body.to_owned()))
}
