//! A canary under load: `teal rollout web --canary 10,50,100` of one
//! container to a new image, at [`crate::RATE`] requests a second over new
//! connections. Each run also draws its timeline (`docs/canary-*.svg`, see
//! [`crate::timeline`]) with the steps marked from the command's output as
//! it printed them.
//!
//! - `canary`: the new image is as good as the old one: promoted.
//! - `canary-bad`: it answers 500 to one request in five
//!   (`TEAL_APP_FAIL_EVERY=5`): rolled back at the first step. The row
//!   says what the failed requests would have been with a full switch
//!   instead: one in five of what the new version would have served from
//!   the rollout's start to its end.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::load::{percentile, Sample};
use crate::stack::{sh, Teal};
use crate::timeline::{write_svg, Mark};
use crate::{gets, steady, Connections, Steady};

/// The canary's steps and how long each is held.
const STEPS: &str = "10,50,100";
const STEP: &str = "5s";
/// The bad version's failure rate, as its one request in N.
const FAIL_EVERY: u64 = 5;

#[derive(Clone, Copy)]
pub enum Version {
    Good,
    Bad,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::Good => "canary",
            Version::Bad => "canary-bad",
        }
    }

    fn picture(self) -> &'static str {
        match self {
            Version::Good => "canary-promoted.svg",
            Version::Bad => "canary-rolled-back.svg",
        }
    }
}

pub struct CanaryRow {
    name: &'static str,
    requests: usize,
    failed: usize,
    /// Failed from the rollout's start to its end.
    failed_in_rollout: usize,
    /// One in FAIL_EVERY of the requests sent in that window (canary-bad).
    full_switch_cost: Option<usize>,
    p99: f64,
    max: f64,
    outcome: String,
    picture: PathBuf,
}

pub async fn scenario(version: Version, duration: Duration) -> CanaryRow {
    let name = version.name();
    // `containers` is held to the end: dropping it removes the service's containers.
    let Steady {
        proxy: teal,
        containers: _containers,
        load,
        rollout_start,
        ..
    } = steady::<Teal>(name, gets(Connections::Close), &[], duration).await;
    let image = format!("{}-canary:new", teal.prefix());
    let env = match version {
        Version::Good => String::new(),
        Version::Bad => format!("ENV TEAL_APP_FAIL_EVERY={FAIL_EVERY}\n"),
    };
    build_image(&image, &format!("FROM {}\n{env}", crate::app::IMAGE));

    let started = load.started;
    let marks = Arc::new(Mutex::new(vec![Mark {
        at: rollout_start,
        label: "rollout".into(),
    }]));
    let rollout = {
        let marks = marks.clone();
        let mut command = teal.cli_command(&[
            "rollout",
            "web",
            "--image",
            &image,
            "--canary",
            STEPS,
            "--step",
            STEP,
            "--max-error-rate",
            "1%",
        ]);
        tokio::task::spawn_blocking(move || {
            let mut child = command
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn teal rollout");
            let stdout = child.stdout.take().expect("stdout");
            let mut printed = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(label) = mark_of(&line) {
                    marks.lock().expect("marks").push(Mark {
                        at: started.elapsed(),
                        label,
                    });
                }
                printed.push_str(&line);
                printed.push('\n');
            }
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            printed.push_str(&stderr);
            let ok = child.wait().is_ok_and(|s| s.success());
            (ok, printed, started.elapsed())
        })
    };
    let (ok, printed, ended) = rollout.await.expect("rollout thread");
    let (samples, errors) = load.finish().await;
    sh("docker", &["rmi", "-f", &image]);
    if !errors.is_empty() {
        eprintln!("  {name}: errors {errors:?}");
    }
    let outcome = printed
        .lines()
        .find(|l| l.starts_with("deploy "))
        .unwrap_or(if ok { "completed" } else { "failed" })
        .to_owned();
    eprintln!(
        "  {name}: teal rollout exit {}:\n{printed}",
        if ok { "0" } else { "non-zero" }
    );

    let in_rollout: Vec<&Sample> = samples
        .iter()
        .filter(|s| (rollout_start..=ended).contains(&s.at))
        .collect();
    let picture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(version.picture());
    let title = format!(
        "teal rollout --canary {STEPS} --step {STEP} ({name}), {} req/s",
        crate::RATE
    );
    let marks = std::mem::take(&mut *marks.lock().expect("marks"));
    if let Err(error) = write_svg(&picture, &title, &samples, &marks) {
        eprintln!("  {name}: {error}");
    }
    let all: Vec<&Sample> = samples.iter().collect();
    CanaryRow {
        name,
        requests: samples.len(),
        failed: samples.iter().filter(|s| !s.ok).count(),
        failed_in_rollout: in_rollout.iter().filter(|s| !s.ok).count(),
        full_switch_cost: matches!(version, Version::Bad).then(|| in_rollout.len() / FAIL_EVERY as usize),
        p99: percentile(&all, 99.0),
        max: percentile(&all, 100.0),
        outcome,
        picture,
    }
}

/// The moments of the command's output worth a line in the picture.
fn mark_of(line: &str) -> Option<String> {
    if let Some(rest) = line.strip_prefix("canary step ") {
        // "canary step 1/3: 10% of the traffic ..."
        return rest.split_whitespace().nth(1).map(|share| share.to_owned());
    }
    if line.starts_with("rolling back") {
        return Some("rolled back".into());
    }
    if line.starts_with("draining ") {
        return Some("old drained".into());
    }
    None
}

/// `docker build` of `dockerfile` (no context), tagged `tag`.
fn build_image(tag: &str, dockerfile: &str) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("docker build");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dockerfile.as_bytes())
        .expect("write the Dockerfile");
    assert!(child.wait().is_ok_and(|s| s.success()), "docker build {tag} failed");
}

impl std::fmt::Display for CanaryRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} requests, {} failed ({} during the rollout{}), p99 {:.1} ms, max {:.1} ms; {}; picture {}",
            self.name,
            self.requests,
            self.failed,
            self.failed_in_rollout,
            self.full_switch_cost
                .map(|n| format!("; a full switch would have failed ~{n}"))
                .unwrap_or_default(),
            self.p99,
            self.max,
            self.outcome,
            self.picture.display()
        )
    }
}
