//! Docker Compose from the tests, in both versions users have: v2 (`docker
//! compose`, the CLI plugin scripts/common.sh installs) and v1 (Debian's
//! `docker-compose`). One project per test, removed (`down`) on drop.

use std::process::Command as StdCommand;
use std::sync::OnceLock;

use crate::util::{repo_root, run, skip, Undo};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `docker compose`: the Go rewrite, a Docker CLI plugin.
    V2,
    /// `docker-compose`: the Python original, what Debian 12 packages.
    V1,
}

impl Version {
    /// The program and the arguments before compose's own.
    fn command(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Version::V2 => ("docker", &["compose"]),
            Version::V1 => ("docker-compose", &[]),
        }
    }

    /// True when this compose runs here; otherwise says SKIPPED (a panic
    /// under CI) with how to install it, and the test should return.
    pub fn usable(self) -> bool {
        static V2: OnceLock<bool> = OnceLock::new();
        static V1: OnceLock<bool> = OnceLock::new();
        let cell = match self {
            Version::V2 => &V2,
            Version::V1 => &V1,
        };
        let (program, leading) = self.command();
        let works = *cell.get_or_init(|| {
            StdCommand::new(program)
                .args(leading)
                .arg("version")
                .output()
                .is_ok_and(|out| out.status.success())
        });
        if !works {
            skip(match self {
                Version::V2 => {
                    "`docker compose version` fails: scripts/test.sh installs Compose v2 (ensure_compose_v2)"
                }
                Version::V1 => "`docker-compose` is missing: apt-get install docker-compose",
            });
        }
        works
    }

    /// The name compose gives a service's `n`th container: v2 joins the
    /// parts with dashes, v1 with underscores.
    pub fn container_name(self, project: &str, service: &str, n: u32) -> String {
        let sep = match self {
            Version::V2 => "-",
            Version::V1 => "_",
        };
        format!("{project}{sep}{service}{sep}{n}")
    }
}

/// A compose project of one file, removed (`down`) on drop.
pub struct Compose {
    version: Version,
    project: String,
    file: String,
    env: Vec<(&'static str, String)>,
    /// `down`, run on drop.
    undo: Undo,
}

impl Compose {
    /// `file` is relative to the repository root, or absolute.
    pub fn new(version: Version, project: &str, file: &str, env: Vec<(&'static str, String)>) -> Compose {
        let compose = Compose {
            version,
            project: project.to_owned(),
            file: repo_root().join(file).to_string_lossy().into_owned(),
            env,
            undo: Undo::default(),
        };
        let mut down = vec![version.command().0];
        down.extend(compose.args(&["down", "-v", "--remove-orphans", "-t", "2"]));
        compose.undo.push(&down, &compose.env);
        compose
    }

    /// Compose's arguments for `args` in this project, after the program.
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = self.version.command().1.to_vec();
        all.extend(["-p", &self.project, "-f", &self.file]);
        all.extend_from_slice(args);
        all
    }

    pub async fn run(&self, args: &[&str]) -> String {
        run(self.version.command().0, &self.args(args), &self.env).await
    }

    /// Ids of the service's running containers.
    pub async fn ids(&self, service: &str) -> Vec<String> {
        let out = self.run(&["ps", "-q", service]).await;
        out.lines().map(str::to_owned).collect()
    }

    /// The name of the service's `n`th container.
    pub fn container_name(&self, service: &str, n: u32) -> String {
        self.version.container_name(&self.project, service, n)
    }

    /// The last lines `service` logged, for a failure message.
    pub async fn logs(&self, service: &str) -> String {
        let out = tokio::process::Command::new(self.version.command().0)
            .args(self.args(&["logs", "--no-color", "--tail", "60", service]))
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .await;
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}
