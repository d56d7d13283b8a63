//! Reads a running teal's `/status` (for `teal status` and `teal rollout`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::StatusReport;

/// GETs `/status` from the daemon at `addr`.
pub async fn fetch(addr: SocketAddr) -> anyhow::Result<StatusReport> {
    let body = get(addr, "/status").await?;
    serde_json::from_str(&body).context("teal's /status answer is not the expected JSON (a different teal version?)")
}

async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
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
    let ok = head
        .lines()
        .next()
        .is_some_and(|line| line.split_whitespace().nth(1) == Some("200"));
    anyhow::ensure!(
        ok,
        "teal at {addr} answered {}",
        head.lines().next().unwrap_or_default()
    );
    Ok(body.to_owned())
}
