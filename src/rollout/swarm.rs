//! `teal rollout SERVICE` for a Swarm service. Its tasks are Swarm's to
//! start and stop (a task teal created would not be the service's), so
//! the rollout asks Swarm for a start-first update (`--image`, else the
//! same image forced, as `docker service update --force`) and follows it
//! through teal's own view, `/status`:
//!
//! - Swarm starts a new task, waits until it runs (its healthcheck passed)
//!   and stops an old one; teal routes the new task once healthy and
//!   drains the old one at Swarm's stop signal, as for any container.
//! - Done once Swarm calls the update completed and every task teal routes
//!   is a new one, UP in HAProxy, as many as the service's replicas.
//! - Rolled back (`docker service rollback`) when Swarm pauses the update
//!   (a new task failed, with Swarm's default `failure_action: pause`),
//!   when no new task comes UP in HAProxy within `--timeout`, or on the
//!   first Ctrl-C. Swarm rolling back by itself (`failure_action:
//!   rollback`) is waited out. Either way the command exits non-zero, with
//!   the reason, once the previous spec's tasks serve again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::progress::seconds;
use crate::deploy::{Deploy, Outcome};
use crate::docker::service_update::{ServiceApi, SwarmService, UpdateProgress, UpdateState};
use crate::docker::Client;
use crate::settings::RolloutSettings;
use crate::status::{self, ServerStatus, StatusReport};

const POLL: Duration = Duration::from_millis(250);
/// A rollback waits at least this long for the previous tasks to serve.
const ROLLBACK_WAIT: Duration = Duration::from_secs(60);

/// The Swarm service labelled `PREFIX.service=SERVICE` (in stack `project`,
/// when given), when the daemon is a manager and has one.
pub async fn find(
    docker: &Client,
    api: &ServiceApi,
    label_prefix: &str,
    service: &str,
    project: Option<&str>,
) -> anyhow::Result<Option<SwarmService>> {
    if !docker.swarm_node().await.is_ok_and(|node| node.manager) {
        return Ok(None);
    }
    let mut labels = vec![format!("{label_prefix}.service={service}")];
    labels.extend(project.map(|p| format!("com.docker.stack.namespace={p}")));
    let mut found = api.services(&labels).await?;
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => {
            let names: Vec<&str> = found.iter().map(SwarmService::name).collect();
            anyhow::bail!(
                "{} Swarm services have the label {label_prefix}.service={service}: {}; name the stack with \
                 --project",
                names.len(),
                names.join(", ")
            )
        }
    }
}

/// `started`: when the command began.
pub async fn run(
    settings: &RolloutSettings,
    api: &ServiceApi,
    service: SwarmService,
    started: Instant,
) -> anyhow::Result<()> {
    let name = settings.service.as_str();
    anyhow::ensure!(
        settings.canary.is_none(),
        "{name} is a Swarm service ({}): its tasks are Swarm's to start, so teal cannot weigh new against old; \
         run `teal rollout {name}` without --canary for Swarm's start-first update",
        service.name()
    );
    let report = status::fetch(settings.status_bind, &settings.state_dir)
        .await
        .map_err(|e| e.context("teal rollout needs the running daemon to tell when a new task is UP in HAProxy"))?;
    anyhow::ensure!(
        report.services.iter().any(|s| s.name == name),
        "the teal at {} does not serve {name} (Swarm service {}): does it run on a manager with --label-prefix {}? \
         (see `teal status`)",
        settings.status_bind,
        service.name(),
        settings.label_prefix
    );
    let old: BTreeSet<String> = servers(&report, name).map(|s| s.container_id.clone()).collect();
    let previous = service.update().and_then(|u| u.started_at);
    let deploy = Deploy::start(settings.status_bind, &settings.state_dir, name, "rollout").await;
    println!(
        "rollout {name}: Swarm service {} ({} task{} routed) -> image {}{}",
        service.name(),
        old.len(),
        super::plural(old.len()),
        settings.image.as_deref().unwrap_or(service.image()),
        if settings.image.is_none() {
            " (forced update)"
        } else {
            ""
        }
    );
    println!("  Swarm starts each new task before it stops an old one; teal drains the old one at its stop");
    for warning in api.update(&service, settings.image.as_deref()).await? {
        println!("  note from Docker: {warning}");
    }

    let interrupted = CancellationToken::new();
    tokio::spawn(super::interrupt_on_signal(interrupted.clone()));
    let watch = Watch {
        settings,
        api,
        service_id: service.id(),
        replicas: service.replicas().unwrap_or(old.len() as u64).max(1) as usize,
        old: &old,
        previous: previous.as_deref(),
    };
    let mut new = BTreeSet::new();
    let result = watch.update(&mut new, &interrupted).await;
    let old_ids: Vec<&str> = old.iter().map(String::as_str).collect();
    let new_ids: Vec<&str> = new.iter().map(String::as_str).collect();
    match result {
        Ok(()) => {
            println!(
                "rollout {name}: done in {}; {} new task{} serve",
                seconds(started.elapsed()),
                new.len(),
                super::plural(new.len())
            );
            deploy
                .finish(&settings.state_dir, Outcome::Completed, None, &old_ids, &new_ids)
                .await;
            Ok(())
        }
        Err(Failure { why, swarm_rolls_back }) => {
            println!("rolling back: {why}");
            let back = watch.roll_back(swarm_rolls_back).await;
            let (outcome, reason) = match &back {
                Ok(()) => (Outcome::RolledBack, why.clone()),
                Err(left) => (Outcome::Failed, format!("{why}; then the rollback: {left}")),
            };
            deploy
                .finish(&settings.state_dir, outcome, Some(reason.clone()), &old_ids, &new_ids)
                .await;
            match back {
                Ok(()) => anyhow::bail!("rollout of {name} failed and was rolled back: {why}"),
                Err(_) => anyhow::bail!(
                    "rollout of {name} failed: {reason} (see `docker service ps {}`)",
                    service.name()
                ),
            }
        }
    }
}

/// Why the update is given up; `swarm_rolls_back`: Swarm already does.
struct Failure {
    why: String,
    swarm_rolls_back: bool,
}

struct Watch<'a> {
    settings: &'a RolloutSettings,
    api: &'a ServiceApi,
    service_id: &'a str,
    replicas: usize,
    /// The tasks (container ids) teal routed before the update.
    old: &'a BTreeSet<String>,
    /// When the update before this one began: its state is not ours.
    previous: Option<&'a str>,
}

impl Watch<'_> {
    /// Follows Swarm's update until teal routes only new tasks, all UP.
    /// `new` collects the new tasks teal routed (for the deploy report).
    async fn update(&self, new: &mut BTreeSet<String>, interrupted: &CancellationToken) -> Result<(), Failure> {
        let name = self.settings.service.as_str();
        let mut progressed = Instant::now();
        let mut up = BTreeSet::new();
        loop {
            let swarm = self.progress().await;
            if let Some(failure) = swarm.as_ref().and_then(failed) {
                return Err(failure);
            }
            if let Ok(report) = status::fetch(self.settings.status_bind, &self.settings.state_dir).await {
                let (old, fresh): (Vec<&ServerStatus>, Vec<&ServerStatus>) =
                    servers(&report, name).partition(|s| self.old.contains(&s.container_id));
                new.extend(fresh.iter().map(|s| s.container_id.clone()));
                for server in fresh.iter().filter(|s| s.is_up()) {
                    if up.insert(server.container_id.clone()) {
                        progressed = Instant::now();
                        println!(
                            "  new task {}{}: UP in HAProxy",
                            server.container_name,
                            server.node.as_deref().map(|n| format!(" on {n}")).unwrap_or_default()
                        );
                    }
                }
                let serving = fresh.iter().filter(|s| s.is_up()).count();
                let completed = swarm.as_ref().is_some_and(|p| p.state == UpdateState::Completed);
                if completed && old.is_empty() && serving >= self.replicas {
                    return Ok(());
                }
            }
            if progressed.elapsed() >= self.settings.timeout {
                return Err(Failure {
                    why: format!(
                        "no new task came UP in HAProxy for {} (--timeout): see `docker service ps`",
                        seconds(self.settings.timeout)
                    ),
                    swarm_rolls_back: false,
                });
            }
            tokio::select! {
                _ = interrupted.cancelled() => return Err(Failure { why: "interrupted".into(), swarm_rolls_back: false }),
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Swarm's update, once it is this rollout's; `None` before Swarm has
    /// begun it (or when the daemon does not answer).
    async fn progress(&self) -> Option<UpdateProgress> {
        let service = self.api.service(self.service_id).await.ok()?;
        service.update().filter(|p| p.started_at.as_deref() != self.previous)
    }

    /// Asks Swarm to roll back (unless it does already), then waits until
    /// it has and teal routes as many UP tasks as the service has replicas.
    /// (Swarm rolls back with new tasks of the previous spec where it had
    /// already stopped old ones: container ids cannot tell them apart.)
    async fn roll_back(&self, swarm_rolls_back: bool) -> Result<(), String> {
        let name = self.settings.service.as_str();
        if !swarm_rolls_back {
            let service = self.api.service(self.service_id).await.map_err(|e| e.to_string())?;
            self.api
                .roll_back(&service)
                .await
                .map_err(|e| format!("Swarm refused it: {e}"))?;
            println!("  asked Swarm to go back to the previous spec (docker service rollback)");
        }
        let deadline = Instant::now() + self.settings.timeout.max(ROLLBACK_WAIT);
        loop {
            let state = self.progress().await.map(|p| p.state);
            if state == Some(UpdateState::RollbackPaused) {
                return Err("Swarm paused its rollback".into());
            }
            if let Ok(report) = status::fetch(self.settings.status_bind, &self.settings.state_dir).await {
                let serving = servers(&report, name).filter(|s| s.is_up()).count();
                if state == Some(UpdateState::RolledBack) && serving >= self.replicas {
                    println!(
                        "  rolled back: {serving} task{} of the previous spec serve",
                        super::plural(serving)
                    );
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "Swarm had not rolled back after {}",
                    seconds(self.settings.timeout.max(ROLLBACK_WAIT))
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A state of Swarm's update that ends this rollout as a failure.
fn failed(progress: &UpdateProgress) -> Option<Failure> {
    let message = progress.message.as_deref().unwrap_or("no message");
    match progress.state {
        UpdateState::Updating | UpdateState::Completed => None,
        UpdateState::Paused => Some(Failure {
            why: format!("Swarm paused the update: {message}"),
            swarm_rolls_back: false,
        }),
        UpdateState::RollingBack | UpdateState::RolledBack | UpdateState::RollbackPaused => Some(Failure {
            why: format!("Swarm rolls the update back: {message}"),
            swarm_rolls_back: true,
        }),
    }
}

fn servers<'a>(report: &'a StatusReport, service: &'a str) -> impl Iterator<Item = &'a ServerStatus> {
    report
        .services
        .iter()
        .filter(move |s| s.name == service)
        .flat_map(|s| s.servers.iter())
}
