//! The `docker` CLI, pointed at one daemon, remembering every container a
//! test creates so that dropping it removes them, even when the test panics.

use std::process::Command as StdCommand;
use std::sync::Mutex;
use std::time::Instant;

use tokio::process::Command;

use crate::util::{ensure_images, IMAGE};

pub struct Docker {
    /// `-H` for the CLI; `None` means the environment's daemon.
    host: Option<String>,
    /// Ids of containers this guard created, removed on drop.
    created: Mutex<Vec<String>>,
}

/// A container a test started. `body` is what its httpd answers (`BODY`).
pub struct Container {
    pub id: String,
    pub name: String,
    pub body: String,
    /// When `docker start` returned.
    pub started_at: Instant,
}

impl Docker {
    /// The machine's daemon (honours DOCKER_HOST, like teal).
    pub fn shared() -> Docker {
        ensure_images();
        Docker::at(None)
    }

    /// A daemon at `host` (e.g. a private dockerd); images are the caller's job.
    pub fn at(host: Option<String>) -> Docker {
        Docker {
            host,
            created: Mutex::new(Vec::new()),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("docker");
        if let Some(host) = &self.host {
            cmd.arg("-H").arg(host);
        }
        cmd.kill_on_drop(true);
        cmd
    }

    /// Runs `docker ARGS`, returns trimmed stdout; Err carries stderr.
    pub async fn try_run(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command()
            .args(args)
            .output()
            .await
            .map_err(|e| format!("spawn docker: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "docker {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    pub async fn run(&self, args: &[&str]) -> String {
        self.try_run(args).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts describing a container named `<prefix>-<short>` whose labels use
    /// `prefix` (the test's label prefix).
    pub fn container<'a>(&'a self, prefix: &str, short: &str) -> ContainerSpec<'a> {
        let name = format!("{prefix}-{short}");
        ContainerSpec {
            docker: self,
            prefix: prefix.to_owned(),
            args: vec![
                "--init".into(),
                "--name".into(),
                name.clone(),
                "-e".into(),
                format!("BODY={name}"),
            ],
            name,
        }
    }

    pub async fn stop(&self, c: &Container) {
        self.run(&["stop", "-t", "10", &c.id]).await;
    }

    pub async fn exec(&self, c: &Container, cmd: &[&str]) {
        let mut args = vec!["exec", c.id.as_str()];
        args.extend_from_slice(cmd);
        self.run(&args).await;
    }

    /// `starting`, `healthy`, `unhealthy` (or empty without a HEALTHCHECK).
    pub async fn health(&self, c: &Container) -> String {
        self.run(&[
            "inspect",
            "-f",
            "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
            &c.id,
        ])
        .await
    }

    fn remove_all_now(&self) {
        let ids = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        if ids.is_empty() {
            return;
        }
        let mut cmd = StdCommand::new("docker");
        if let Some(host) = &self.host {
            cmd.arg("-H").arg(host);
        }
        cmd.args(["rm", "-f", "-v"]).args(&ids);
        match cmd.output() {
            Ok(out) if !out.status.success() => {
                let err = String::from_utf8_lossy(&out.stderr);
                // Already gone is fine; anything else deserves a line.
                if !err.contains("No such container") {
                    eprintln!("cleanup: docker rm -f {ids:?}: {err}");
                }
            }
            Err(e) => eprintln!("cleanup: docker rm -f {ids:?}: {e}"),
            Ok(_) => {}
        }
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        self.remove_all_now();
    }
}

pub struct ContainerSpec<'a> {
    docker: &'a Docker,
    prefix: String,
    name: String,
    args: Vec<String>,
}

impl ContainerSpec<'_> {
    /// Adds the label `<prefix>.<key>=<value>`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.args.push("--label".into());
        self.args.push(format!("{}.{key}={value}", self.prefix));
        self
    }

    pub fn service(self, name: &str) -> Self {
        self.label("service", name)
    }

    /// Any other `docker create` flag(s).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Host network, httpd on 127.0.0.1:`port` (and `<prefix>.port` says so).
    pub fn host_network(self, port: u16) -> Self {
        let port = port.to_string();
        self.args(&["--network", "host", "-e", &format!("PORT={port}")])
            .label("port", &port)
    }

    /// `docker create` then `docker start`; the guard owns the container.
    pub async fn run(self) -> Container {
        let mut args = vec!["create"];
        args.extend(self.args.iter().map(String::as_str));
        args.push(IMAGE);
        let id = self.docker.run(&args).await;
        self.docker
            .created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id.clone());
        self.docker.run(&["start", &id]).await;
        Container {
            id,
            body: self.name.clone(),
            name: self.name,
            started_at: Instant::now(),
        }
    }
}
