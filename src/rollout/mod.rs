//! `teal rollout SERVICE`: replace a service's containers without losing a
//! request, and roll back when the new ones do not come up.
//!
//! 1. Lock the service (one rollout at a time) and finish what a crashed
//!    rollout left behind ([`lock`]).
//! 2. Find the running containers of the service; check that the running
//!    daemon's `/status` serves it (only it can say "UP in HAProxy").
//! 3. Create and start one replacement per old container: the same
//!    configuration on the new image ([`plan`], [`crate::docker::replica`]).
//! 4. Wait until each is healthy in Docker and UP in HAProxy ([`wait`]).
//!    If one exits, turns unhealthy, is left out by teal or is late, the
//!    replacements are removed; the old containers were never touched and
//!    keep serving. That is the rollback; the command exits non-zero.
//! 5. Drain the old containers ([`crate::drain`]): out of rotation, then
//!    stopped once HAProxy has no request in flight on them (at most
//!    `--drain`), so a long request or a streamed response completes whole.
//!    Remove them, and give plain (non-compose) replacements the old names.
//!
//! With `--canary` ([`canary`]), the replacements are born with no share of
//! the traffic; between steps 4 and 5 they get each step's share in turn,
//! judged from HAProxy's counters ([`analysis`]). A step that fails rolls
//! back as in step 4: the replacements are drained and removed, the old
//! containers serve all the traffic again.
//!
//! A Swarm service's tasks are Swarm's to replace: [`swarm`] asks Swarm for
//! the update and follows it instead.

mod analysis;
mod canary;
mod lock;
mod plan;
mod progress;
mod swarm;
mod wait;

pub use analysis::Limits;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::deploy::{Deploy, Outcome, Sampler};
use crate::docker::replica::Plan;
use crate::docker::service_update::ServiceApi;
use crate::docker::{Client, DockerError};
use crate::drain::{Idle, NotIdle};
use crate::model::labels::Mode;
use crate::settings::RolloutSettings;
use lock::{Journal, Phase, RolloutLock};
use plan::Old;
use progress::seconds;
use wait::Replacement;

pub async fn run(settings: RolloutSettings) -> anyhow::Result<()> {
    let started = Instant::now();
    let service = settings.service.as_str();
    let docker = crate::docker::connect(settings.docker_host.as_deref()).await?;
    // A stop waits out the grace period: keep the client from giving up first.
    let docker = docker.with_timeout(Duration::from_secs(120).max(settings.drain + Duration::from_secs(30)));
    let (mut lock, left) = RolloutLock::acquire(&settings.state_dir, &settings.label_prefix, service)?;
    if let Some(journal) = left {
        recover(&docker, &settings, &journal).await;
    }

    let project = project(&settings, &docker).await?;
    let old = plan::old_containers(&docker, &settings.label_prefix, service, project.as_deref()).await?;
    if old.is_empty() {
        let api = ServiceApi::new(settings.docker_host.as_deref(), docker.api_version());
        if let Some(swarm_service) =
            swarm::find(&docker, &api, &settings.label_prefix, service, project.as_deref()).await?
        {
            let result = swarm::run(&settings, &api, swarm_service, started).await;
            lock.finish()?;
            return result;
        }
    }
    anyhow::ensure!(
        !old.is_empty(),
        "no running container has the label {}.service={service}{}",
        settings.label_prefix,
        project.map(|p| format!(" in compose project {p}")).unwrap_or_default()
    );
    let report = crate::status::fetch(settings.status_bind, &settings.state_dir)
        .await
        .context("teal rollout needs the running daemon to tell when a replacement is UP in HAProxy")?;
    anyhow::ensure!(
        report.services.iter().any(|s| s.name == service),
        "the teal at {} does not serve {service}: does it run with --label-prefix {}{}? (see `teal status`)",
        settings.status_bind,
        settings.label_prefix,
        project
            .as_deref()
            .map(|p| format!(" and --project {p}"))
            .unwrap_or_default()
    );

    if let Some(header) = settings.canary.as_ref().and_then(|c| c.header.as_ref()) {
        anyhow::ensure!(
            report
                .services
                .iter()
                .any(|s| s.name == service && s.mode == Mode::Http),
            "--canary-header {header}: {service} is a tcp service, whose traffic has no headers; \
             drop --canary-header (weights alone work for tcp)"
        );
    }

    let kind = if settings.canary.is_some() { "canary" } else { "rollout" };
    let mut deploy = Deploy::start(settings.status_bind, &settings.state_dir, service, kind).await;
    let plans = plan::plan_all(
        &docker,
        &settings.label_prefix,
        settings.image.as_deref(),
        &old,
        &deploy.id,
    )
    .await?;
    println!(
        "rollout {service}: {} container{} -> {}",
        old.len(),
        plural(old.len()),
        describe_images(&plans)
    );
    for (old, plan) in old.iter().zip(&plans) {
        println!("  {} -> {}", old.name(), plan.name);
        for note in &plan.notes {
            println!("    note: {note}");
        }
    }

    let old_ids: Vec<&str> = old.iter().map(Old::id).collect();
    if let Some(canary) = &settings.canary {
        describe_canary(canary);
        // Before a replacement exists: each is born with weight 0.
        let sides = sides(&settings, &deploy.id, &old_ids, &[]);
        if let Err(why) = canary::set_share(&sides, 0).await {
            canary::clear(&settings.state_dir, &settings.service);
            lock.finish()?;
            deploy
                .finish(&settings.state_dir, Outcome::Failed, Some(why.clone()), &old_ids, &[])
                .await;
            anyhow::bail!("rollout of {service} did not start: {why}");
        }
    }

    let interrupted = CancellationToken::new();
    tokio::spawn(interrupt_on_signal(interrupted.clone()));
    let mut replacements = Vec::new();
    let up = async {
        start_all(&docker, &plans, &old, &mut replacements, &mut lock).await?;
        wait::until_up(
            &docker,
            settings.status_bind,
            &settings.state_dir,
            &mut replacements,
            settings.timeout,
            &interrupted,
        )
        .await
    }
    .await;
    let failed = Failed {
        docker: &docker,
        settings: &settings,
        replacements: &replacements,
        old_ids: &old_ids,
    };
    if let Err(why) = up {
        println!("rolling back: removing the replacements; the old containers were not touched and keep serving");
        return Err(failed.roll_back(lock, deploy, why).await);
    }

    if let Some(canary) = &settings.canary {
        let new: Vec<(&str, &str)> = replacements.iter().map(|r| (r.id.as_str(), r.name.as_str())).collect();
        let sides = sides(&settings, &deploy.id, &old_ids, &new);
        let steps = canary::run(&sides, canary, &deploy.sampler, &interrupted).await;
        let steps_failed = match steps {
            Ok(report) => {
                deploy.canary = Some(report);
                None
            }
            Err((report, why)) => {
                deploy.canary = Some(report);
                Some(why)
            }
        };
        if let Some(why) = steps_failed {
            println!(
                "rolling back: the old containers get all the traffic again; draining and removing the replacements"
            );
            return Err(failed.roll_back(lock, deploy, why).await);
        }
        println!("canary passed every step: the new containers get all the traffic");
    }

    lock.record(&journal(Phase::Drain, &old, &replacements))?;
    retire(&docker, &settings, &old, &replacements, &deploy.sampler).await;
    if settings.canary.is_some() {
        // After the old ones are out of rotation: their weights held them at their share until then.
        canary::clear(&settings.state_dir, &settings.service);
    }
    lock.finish()?;
    println!(
        "rollout {service}: done in {}; {} new container{} {}",
        seconds(started.elapsed()),
        replacements.len(),
        plural(replacements.len()),
        if replacements.len() == 1 { "serves" } else { "serve" }
    );
    let new_ids: Vec<&str> = replacements.iter().map(|r| r.id.as_str()).collect();
    deploy
        .finish(&settings.state_dir, Outcome::Completed, None, &old_ids, &new_ids)
        .await;
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What a failed rollout needs to roll back.
struct Failed<'a> {
    docker: &'a Client,
    settings: &'a RolloutSettings,
    replacements: &'a [Replacement],
    old_ids: &'a [&'a str],
}

impl Failed<'_> {
    /// Removes the replacements, ends a canary's weights, reports the
    /// deploy rolled back because of `why`; the error to exit with.
    async fn roll_back(&self, lock: RolloutLock, deploy: Deploy, why: String) -> anyhow::Error {
        let settings = self.settings;
        roll_back(self.docker, settings, self.replacements, &deploy.sampler).await;
        if settings.canary.is_some() {
            canary::clear(&settings.state_dir, &settings.service);
        }
        if let Err(error) = lock.finish() {
            return error.into();
        }
        let new_ids: Vec<&str> = self.replacements.iter().map(|r| r.id.as_str()).collect();
        deploy
            .finish(
                &settings.state_dir,
                Outcome::RolledBack,
                Some(why.clone()),
                self.old_ids,
                &new_ids,
            )
            .await;
        anyhow::anyhow!("rollout of {} failed and was rolled back: {why}", settings.service)
    }
}

fn describe_canary(canary: &crate::settings::CanarySettings) {
    let steps: Vec<String> = canary.steps.iter().map(|p| format!("{p}%")).collect();
    let latency = canary
        .limits
        .max_latency_ratio
        .map(|r| format!(" or --max-latency-ratio {r}"))
        .unwrap_or_default();
    println!(
        "canary: {} of the traffic to the new containers, each step held {}; over --max-error-rate {}{latency} \
         rolls back; each step judged on at least {} requests (--min-requests)",
        steps.join(", "),
        seconds(canary.step),
        analysis::percent(canary.limits.max_error_rate),
        canary.limits.min_requests
    );
    if let Some(header) = &canary.header {
        println!("  requests with header {header} go to the new containers at every step (a reload sets the rule)");
    }
}

fn sides<'a>(
    settings: &'a RolloutSettings,
    deploy: &'a str,
    old: &'a [&'a str],
    new: &'a [(&'a str, &'a str)],
) -> canary::Sides<'a> {
    canary::Sides {
        service: &settings.service,
        status_bind: settings.status_bind,
        state_dir: &settings.state_dir,
        deploy,
        old,
        new,
        header: settings.canary.as_ref().and_then(|c| c.header.as_ref()),
    }
}

fn describe_images(plans: &[Plan]) -> String {
    let mut images: Vec<&str> = plans.iter().map(Plan::image).collect();
    images.dedup();
    format!("image {}", images.join(", "))
}

/// `--project`, else teal's own compose project when it runs in one.
async fn project(settings: &RolloutSettings, docker: &Client) -> anyhow::Result<Option<String>> {
    if settings.project.is_some() {
        return Ok(settings.project.clone());
    }
    match crate::docker::own_container_id() {
        Some(id) => Ok(crate::docker::own_container(docker, &id).await?.project),
        None => Ok(None),
    }
}

fn journal(phase: Phase, old: &[Old], replacements: &[Replacement]) -> Journal {
    Journal {
        pid: std::process::id(),
        started: lock::unix_now(),
        phase,
        old: old.iter().map(|o| o.id().to_owned()).collect(),
        new: replacements.iter().map(|r| r.id.clone()).collect(),
    }
}

/// Creates every replacement (each recorded in the journal as soon as it
/// exists), connects its other networks, then starts them all.
async fn start_all(
    docker: &Client,
    plans: &[Plan],
    old: &[Old],
    replacements: &mut Vec<Replacement>,
    lock: &mut RolloutLock,
) -> Result<(), String> {
    // On disk before the first replacement exists: a second rollout that
    // sees a replacement also finds this one's pid to name.
    lock.record(&journal(Phase::Start, old, replacements))
        .map_err(|e| e.to_string())?;
    for (i, plan) in plans.iter().enumerate() {
        let id = docker
            .create(plan)
            .await
            .map_err(|e| format!("cannot create {}: {e}", plan.name))?;
        replacements.push(Replacement {
            id: id.clone(),
            name: plan.name.clone(),
            replaces: i,
            routed: false,
            settle: settle(&old[i]),
            up_since: None,
            up: false,
        });
        lock.record(&journal(Phase::Start, old, replacements))
            .map_err(|e| e.to_string())?;
        docker
            .connect_networks(&id, plan)
            .await
            .map_err(|e| format!("cannot connect {}: {e}", plan.name))?;
    }
    for r in replacements.iter() {
        docker
            .start(&r.id)
            .await
            .map_err(|e| format!("cannot start {}: {e}", r.name))?;
    }
    Ok(())
}

/// How long a replacement must stay UP in HAProxy to have passed a check:
/// its service's check interval (the old container's label: the
/// replacement has the same), plus a second for the check to run.
fn settle(old: &Old) -> Duration {
    Duration::from_millis(old.labels.health.interval_ms) + Duration::from_secs(1)
}

/// Removes the replacements. One that was routed may be serving: it is
/// drained like an old container would be.
async fn roll_back(docker: &Client, settings: &RolloutSettings, replacements: &[Replacement], sampler: &Sampler) {
    let (routed, unrouted): (Vec<&Replacement>, Vec<&Replacement>) = replacements.iter().partition(|r| r.routed);
    let removals = unrouted.iter().map(|r| async move {
        match stop_and_remove(docker, &r.id, Duration::ZERO, true).await {
            Ok(()) => println!("  removed {}", r.name),
            Err(error) => println!("  could not remove {} ({}): {error}", r.name, short(&r.id)),
        }
    });
    let routed: Vec<(&str, &str)> = routed.iter().map(|r| (r.id.as_str(), r.name.as_str())).collect();
    futures::future::join(
        futures::future::join_all(removals),
        drain_and_remove(docker, settings, &routed, true, Some(sampler)),
    )
    .await;
}

/// Drains and removes the old containers, all at once: every replacement
/// is UP, so the service keeps its capacity.
async fn retire(
    docker: &Client,
    settings: &RolloutSettings,
    old: &[Old],
    replacements: &[Replacement],
    sampler: &Sampler,
) {
    println!(
        "draining {} old container{}: each stops once no request is in flight on it (at most {})",
        old.len(),
        plural(old.len()),
        seconds(settings.drain)
    );
    let containers: Vec<(&str, &str)> = old.iter().map(|o| (o.id(), o.name())).collect();
    drain_and_remove(docker, settings, &containers, false, Some(sampler)).await;
    for r in replacements {
        let old = &old[r.replaces];
        if old.compose_service().is_some() {
            continue; // compose names by number; the new number is right
        }
        match docker.rename(&r.id, old.name()).await {
            Ok(()) => println!("  renamed {} to {}", r.name, old.name()),
            Err(error) => println!(
                "  kept the name {} (cannot rename it to {}: {error})",
                r.name,
                old.name()
            ),
        }
    }
}

/// Takes `containers` (id, name) out of rotation, then stops each once
/// HAProxy has no request in flight on it, or `--drain` has passed
/// (`docker stop` with `--drain` as its grace period too), and removes it.
/// `volumes`: also remove their anonymous volumes. `sampler`: the deploy's,
/// which takes a last sample of each before it leaves HAProxy.
async fn drain_and_remove(
    docker: &Client,
    settings: &RolloutSettings,
    containers: &[(&str, &str)],
    volumes: bool,
    sampler: Option<&Sampler>,
) {
    if containers.is_empty() {
        return;
    }
    let marked = match crate::drain::mark(docker, &settings.state_dir, containers).await {
        Ok(()) => true,
        Err(error) => {
            println!("  cannot drain them ({error:#}); stopping them (teal drains each on the stop request)");
            false
        }
    };
    let stops = containers.iter().map(|&(id, name)| async move {
        let started = Instant::now();
        let drained = if marked {
            crate::drain::until_idle(settings.status_bind, &settings.state_dir, id, settings.drain).await
        } else {
            Err(NotIdle::NotApplied)
        };
        let waited = seconds(started.elapsed());
        let how = match drained {
            Ok(Idle::Idle) => format!("idle after {waited}"),
            Ok(Idle::NotRouted(why)) | Err(NotIdle::NotRouted(why)) => format!("not in rotation ({why})"),
            Err(NotIdle::InFlight(n)) => format!(
                "still {n} request{} in flight after {waited}, stopped anyway",
                plural(n as usize)
            ),
            Err(NotIdle::NotApplied) => format!(
                "still in rotation after {waited}: does teal run with --state-dir {}? Stopped anyway (teal \
                 drains it on the stop request)",
                settings.state_dir.display()
            ),
            Err(NotIdle::NoAnswer(error)) => format!("cannot tell when it is idle ({error}), stopped"),
        };
        if let Some(sampler) = sampler {
            sampler.sample().await;
        }
        match stop_and_remove(docker, id, settings.drain, volumes).await {
            Ok(()) => println!("  {name}: {how}; stopped and removed ({})", seconds(started.elapsed())),
            Err(error) => println!("  {name}: {how}; could not stop and remove it: {error}"),
        }
    });
    futures::future::join_all(stops).await;
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

/// `docker stop -t GRACE` then `docker rm`; already stopped or gone is fine.
/// `volumes`: also remove the container's anonymous volumes.
async fn stop_and_remove(docker: &Client, id: &str, grace: Duration, volumes: bool) -> Result<(), DockerError> {
    docker.stop(id, grace).await?;
    docker.remove(id, volumes).await
}

/// A rollout that died left its journal: undo or finish its last phase,
/// so the service is whole again before this rollout starts.
async fn recover(docker: &Client, settings: &RolloutSettings, journal: &Journal) {
    let (what, ids, volumes) = match journal.phase {
        Phase::Start => (
            "before its replacements were UP; removing them (its old containers kept serving)",
            &journal.new,
            true,
        ),
        Phase::Drain => (
            "while stopping its old containers; finishing that (its replacements serve)",
            &journal.old,
            false,
        ),
    };
    // Empty when it ended before creating anything.
    if !ids.is_empty() {
        println!(
            "an earlier rollout of {} (pid {}) ended {what}",
            settings.service, journal.pid
        );
        let containers: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), short(id))).collect();
        drain_and_remove(docker, settings, &containers, volumes, None).await;
    }
    // It may have been a canary: its weights end with it.
    canary::clear(&settings.state_dir, &settings.service);
}

/// First SIGINT/SIGTERM: roll back (while replacements are being started
/// and awaited). Second: leave at once; the next rollout cleans up.
async fn interrupt_on_signal(interrupted: CancellationToken) {
    let Ok(mut signals) = crate::signal::StopSignals::install() else {
        return;
    };
    signals.recv().await;
    eprintln!("teal rollout: interrupted (a second signal leaves at once; the next rollout cleans up)");
    interrupted.cancel();
    signals.recv().await;
    std::process::exit(130);
}
