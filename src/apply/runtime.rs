//! Runtime API commands sent to HAProxy's admin socket, in order. What to
//! send is decided in `crate::reconcile`.

use std::path::Path;
use std::time::Duration;

use crate::reconcile::Command;

use super::socket;

/// HAProxy refused a runtime API command (a reload follows).
#[derive(Debug, thiserror::Error)]
#[error("{command:?}: {answer}")]
pub struct RuntimeRefused {
    pub command: String,
    pub answer: String,
}

const BUSY_RETRY_FOR: Duration = Duration::from_secs(3);

/// Runs the commands in order; the first refusal is returned.
pub async fn run(admin_socket: &Path, commands: &[Command]) -> Result<(), RuntimeRefused> {
    for command in commands {
        let line = command.to_string();
        let deadline = tokio::time::Instant::now() + BUSY_RETRY_FOR;
        loop {
            let refused = |answer: String| RuntimeRefused {
                command: line.clone(),
                answer,
            };
            match socket::command(admin_socket, &line).await {
                Ok(answer) if accepted(&answer) => break,
                Ok(answer) if command.retry_while_busy() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(command = %line, answer = answer.trim(), "server busy; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(answer) => return Err(refused(answer.trim().to_owned())),
                Err(error) => return Err(refused(error.to_string())),
            }
        }
    }
    Ok(())
}

/// HAProxy answers state and weight changes with nothing, `add`/`del
/// server` with a confirmation sentence, and `set server addr` by saying
/// what changed ("IP changed from '10.0.0.2' to '10.0.0.3', no need to
/// change the port by 'stats socket command'").
fn accepted(answer: &str) -> bool {
    let answer = answer.trim();
    answer.is_empty()
        || answer.starts_with("New server registered")
        || answer.starts_with("Server deleted")
        || answer.ends_with("by 'stats socket command'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert!(accepted(""));
        assert!(accepted("New server registered.\n"));
        assert!(accepted("Server deleted.\n"));
        assert!(accepted(
            "IP changed from '127.0.0.2' to '127.0.0.3', no need to change the port by 'stats socket command'\n"
        ));
        assert!(!accepted(
            "Server still has connections attached to it, cannot remove it.\n"
        ));
    }
}
