//! ACME's side of HAProxy's runtime API: challenge answers in a map, and
//! certificates put in service without a reload (`new ssl cert`, `set ssl
//! cert`, `commit ssl cert`, `add ssl crt-list`). Each change is written to
//! disk first, so a reload (or an HAProxy that is not running now) loads
//! the same.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::apply::admin_command;

use super::client::Challenges;
use super::files::AcmeFiles;

/// How long a command waits for an admin socket that does not answer.
const SOCKET_WAIT: Duration = Duration::from_secs(5);

/// The running HAProxy, reached on its admin socket.
pub struct Haproxy {
    pub admin_socket: PathBuf,
    pub files: AcmeFiles,
    /// Answers being served: token -> key authorization.
    answers: BTreeMap<String, String>,
}

impl Haproxy {
    pub fn new(admin_socket: PathBuf, files: AcmeFiles) -> Self {
        Self {
            admin_socket,
            files,
            answers: BTreeMap::new(),
        }
    }

    /// Sends one command; `Err` with HAProxy's answer unless `accepted`.
    /// An admin socket that does not answer yet (HAProxy starting, as at
    /// teal's own start) is tried again for a few seconds.
    async fn send(&self, command: &str, accepted: impl Fn(&str) -> bool) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + SOCKET_WAIT;
        let answer = loop {
            match admin_command(&self.admin_socket, command).await {
                Ok(answer) => break answer,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("HAProxy's admin socket {}: {e}", self.admin_socket.display())),
            }
        };
        if accepted(answer.trim()) {
            Ok(answer)
        } else {
            let verb: String = command.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
            Err(format!("HAProxy refused `{verb}`: {}", answer.trim()))
        }
    }

    /// Serves the certificate in `path` (already on disk and in the crt-list
    /// file) for new connections, and lets `name` be redirected to HTTPS.
    /// A certificate HAProxy has loaded is replaced in place (renewal).
    pub async fn load_certificate(&self, name: &str, path: &str, pem: &str) -> Result<(), String> {
        let created = self
            .send(&format!("new ssl cert {path}"), |a| {
                a.starts_with("New empty certificate store") || a.ends_with("already exists!")
            })
            .await?
            .starts_with("New empty");
        // The payload ends at the first empty line: none inside it.
        let payload: String = pem
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let set = self
            .send(&format!("set ssl cert {path} <<\n{payload}"), |a| {
                a.starts_with("Transaction")
            })
            .await;
        if let Err(error) = set {
            let _ = admin_command(&self.admin_socket, &format!("abort ssl cert {path}")).await;
            return Err(error);
        }
        self.send(&format!("commit ssl cert {path}"), |a| a.ends_with("Success!"))
            .await?;
        if created {
            self.send(&format!("add ssl crt-list {} {path}", self.files.crt_list), |a| {
                a.ends_with("Success!")
            })
            .await?;
        }
        self.send(&format!("add acl {} {name}", self.files.served), str::is_empty)
            .await?;
        Ok(())
    }
}

impl Challenges for Haproxy {
    async fn publish(&mut self, token: &str, key_authorization: &str) -> Result<(), String> {
        self.answers.insert(token.to_owned(), key_authorization.to_owned());
        self.files
            .write_challenges(self.answers.iter().map(|(t, a)| (t.as_str(), a.as_str())))
            .map_err(|e| format!("cannot write {}: {e}", self.files.challenges))?;
        self.send(
            &format!("add map {} {token} {key_authorization}", self.files.challenges),
            str::is_empty,
        )
        .await
        .map(drop)
    }

    async fn withdraw(&mut self, token: &str) {
        self.answers.remove(token);
        let _ = self
            .files
            .write_challenges(self.answers.iter().map(|(t, a)| (t.as_str(), a.as_str())));
        let _ = admin_command(
            &self.admin_socket,
            &format!("del map {} {token}", self.files.challenges),
        )
        .await;
    }
}
