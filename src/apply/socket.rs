//! HAProxy's CLI sockets: the admin stats socket (runtime API) and the
//! master CLI. One command per connection.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one command and returns HAProxy's whole answer.
pub async fn command(socket: &Path, command: &str) -> std::io::Result<String> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await?;
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        // HAProxy ends its answer only once it has seen the end of our input.
        stream.shutdown().await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    };
    tokio::time::timeout(COMMAND_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer from HAProxy",
            ))
        })
}

/// The master's line of `show proc`: its pid, how many reloads it did, how
/// many failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterStatus {
    pub pid: u32,
    pub reloads: u64,
    pub failed: u64,
}

/// Parses HAProxy 2.6's `show proc`:
/// `15947  master  1 [failed: 0]  0d00h00m02s  2.6.12`.
pub fn parse_show_proc(answer: &str) -> Option<MasterStatus> {
    let line = answer.lines().find(|l| l.split_whitespace().nth(1) == Some("master"))?;
    let mut fields = line.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let reloads = fields.nth(1)?.parse().ok()?;
    let failed = match (fields.next(), fields.next()) {
        (Some("[failed:"), Some(n)) => n.trim_end_matches(']').parse().ok()?,
        _ => 0,
    };
    Some(MasterStatus { pid, reloads, failed })
}

pub async fn master_status(master_socket: &Path) -> Option<MasterStatus> {
    parse_show_proc(&command(master_socket, "show proc").await.ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_proc() {
        let answer = "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
                      15947           master          3 [failed: 1]   0d00h00m02s     2.6.12-1+deb12u4\n\
                      # workers\n\
                      16218           worker          0               0d00h00m00s     2.6.12-1+deb12u4\n";
        assert_eq!(
            parse_show_proc(answer),
            Some(MasterStatus {
                pid: 15947,
                reloads: 3,
                failed: 1
            })
        );
        assert_eq!(parse_show_proc("garbage"), None);
    }
}
