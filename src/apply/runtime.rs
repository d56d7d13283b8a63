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
///
/// The commands of one server go to HAProxy on one connection, joined by
/// `;`: on a busy machine each connection waits for both HAProxy and teal
/// to be scheduled, and a new server's `add`, `enable health` and `set
/// state` were three of those waits before it was routed. HAProxy runs
/// every command of a line even after one is refused, so a line holds one
/// server's commands only; a refusal leaves the other servers alone.
pub async fn run(admin_socket: &Path, commands: &[Command]) -> Result<(), RuntimeRefused> {
    for batch in batches(commands) {
        match batch {
            [command] if command.retry_while_busy() => run_retrying(admin_socket, command).await?,
            _ => run_line(admin_socket, batch).await?,
        }
    }
    Ok(())
}

/// Consecutive commands of one server; a command worth retrying alone.
fn batches(commands: &[Command]) -> impl Iterator<Item = &[Command]> {
    commands.chunk_by(|a, b| a.target() == b.target() && !a.retry_while_busy() && !b.retry_while_busy())
}

async fn run_line(admin_socket: &Path, batch: &[Command]) -> Result<(), RuntimeRefused> {
    let line = batch.iter().map(Command::to_string).collect::<Vec<_>>().join("; ");
    let output = socket::command(admin_socket, &line)
        .await
        .map_err(|error| refused(&batch[0], error.to_string()))?;
    let mut answers = answers(&output).into_iter();
    for command in batch {
        match answers.next() {
            Some(answer) if accepted(answer) => {}
            Some(answer) => return Err(refused(command, answer.trim().to_owned())),
            None => return Err(refused(command, "no answer from HAProxy".to_owned())),
        }
    }
    Ok(())
}

async fn run_retrying(admin_socket: &Path, command: &Command) -> Result<(), RuntimeRefused> {
    let line = command.to_string();
    let deadline = tokio::time::Instant::now() + BUSY_RETRY_FOR;
    loop {
        match socket::command(admin_socket, &line).await {
            Ok(answer) if accepted(&answer) => return Ok(()),
            Ok(answer) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(command = %line, answer = answer.trim(), "server busy; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(answer) => return Err(refused(command, answer.trim().to_owned())),
            Err(error) => return Err(refused(command, error.to_string())),
        }
    }
}

fn refused(command: &Command, answer: String) -> RuntimeRefused {
    RuntimeRefused {
        command: command.to_string(),
        answer,
    }
}

/// Each command's answer in HAProxy's output for a line of commands: every
/// answer ends with an empty line (an empty answer is that line alone).
fn answers(output: &str) -> Vec<&str> {
    let mut answers = Vec::new();
    let (mut start, mut at) = (0, 0);
    for line in output.split_inclusive('\n') {
        if line == "\n" {
            answers.push(&output[start..at]);
            start = at + 1;
        }
        at += line.len();
    }
    answers
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
    fn a_line_of_commands_has_one_answer_each() {
        // As HAProxy 2.6 answers `add server ...; enable health ...; set server ... state ready`.
        assert_eq!(
            answers("New server registered.\n\n\n\n"),
            ["New server registered.\n", "", ""]
        );
        assert_eq!(answers("\nNo such server.\n\n"), ["", "No such server.\n"]);
        assert!(answers("").is_empty());
    }

    #[test]
    fn one_line_per_server_and_each_retried_command_alone() {
        use crate::model::ServerState;
        use crate::reconcile::Target;
        let target = |server: &str| Target {
            backend: "web".into(),
            server: server.into(),
        };
        let commands = [
            Command::EnableHealth(target("a")),
            Command::SetState(target("a"), ServerState::Ready),
            Command::SetState(target("b"), ServerState::Maint),
            Command::DelServer(target("b")),
            Command::SetState(target("c"), ServerState::Drain),
        ];
        let sizes: Vec<usize> = batches(&commands).map(<[Command]>::len).collect();
        assert_eq!(sizes, [2, 1, 1, 1]);
    }

    #[test]
    fn accepted_answers() {
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
