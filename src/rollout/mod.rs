//! `teal rollout SERVICE`: replace a service's containers without losing a
//! request, and roll back when the new ones do not come up.
//!
//! 1. Lock the service (one rollout at a time) and finish what a crashed
//!    rollout left behind ([`lock`]).
//! 2. Find the running containers of the service; check that the running
//!    daemon's `/status` serves it (only it can say "UP in HAProxy").
//! 3. Create and start one replacement per old container: the same
//!    configuration on the new image ([`replica`]).
//! 4. Wait until each is healthy in Docker and UP in HAProxy ([`wait`]).
//!    If one exits, turns unhealthy, is left out by teal or is late, the
//!    replacements are removed; the old containers were never touched and
//!    keep serving. That is the rollback; the command exits non-zero.
//! 5. Stop the old containers with `--drain` as the grace period (teal
//!    drains each on Docker's stop request), remove them, and give plain
//!    (non-compose) replacements the old names.

mod lock;
mod progress;
mod replica;
mod wait;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bollard::models::{ContainerInspectResponse, ImageConfig, NetworkConnectRequest};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use tokio_util::sync::CancellationToken;

use crate::model::labels::{self, parse_duration, ServiceName};
use crate::model::COMPOSE_PROJECT_LABEL;
use crate::settings::Settings;
use lock::{Journal, Phase, RolloutLock};
use progress::seconds;
use replica::{Plan, Target};
use wait::Replacement;

#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    /// The service to replace: the value of its PREFIX.service label.
    #[arg(value_parser = ServiceName::parse)]
    pub service: ServiceName,

    /// Image of the replacements (an older tag is a rollback) [default: what each old container's image reference points to now].
    #[arg(long, env = "TEAL_ROLLOUT_IMAGE")]
    pub image: Option<String>,

    /// How long the replacements get to be healthy and UP in HAProxy before the rollout is rolled back.
    #[arg(long, env = "TEAL_ROLLOUT_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Grace period of each old container between its stop request (when teal drains it) and SIGKILL.
    #[arg(long, env = "TEAL_ROLLOUT_DRAIN", default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,
}

/// An old container being replaced.
struct Old {
    id: String,
    name: String,
    inspect: ContainerInspectResponse,
}

pub async fn run(settings: Settings, args: RolloutArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let service = args.service.as_str();
    let docker = crate::docker::connect(settings.docker_host.as_deref()).await?;
    // A stop waits out the grace period: keep the client from giving up first.
    let docker = docker.with_timeout(Duration::from_secs(120).max(args.drain + Duration::from_secs(30)));
    let (mut lock, left) = RolloutLock::acquire(&settings.state_dir, &settings.label_prefix, service)?;
    if let Some(journal) = left {
        recover(&docker, service, &journal, args.drain).await;
    }

    let project = project(&settings, &docker).await?;
    let old = old_containers(&docker, &settings.label_prefix, service, project.as_deref()).await?;
    anyhow::ensure!(
        !old.is_empty(),
        "no running container has the label {}.service={service}{}",
        settings.label_prefix,
        project.map(|p| format!(" in compose project {p}")).unwrap_or_default()
    );
    let report = crate::status::fetch(settings.status_bind)
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

    let plans = plan_all(&docker, &settings.label_prefix, &args, &old).await?;
    println!(
        "rollout {service}: {} container{} -> {}",
        old.len(),
        plural(old.len()),
        describe_images(&plans)
    );
    for (old, plan) in old.iter().zip(&plans) {
        println!("  {} -> {}", old.name, plan.name);
        for note in &plan.notes {
            println!("    note: {note}");
        }
    }

    let interrupted = CancellationToken::new();
    tokio::spawn(interrupt_on_signal(interrupted.clone()));
    let mut replacements = Vec::new();
    let up = async {
        start_all(
            &docker,
            &settings.label_prefix,
            &plans,
            &old,
            &mut replacements,
            &mut lock,
        )
        .await?;
        wait::until_up(
            &docker,
            settings.status_bind,
            &mut replacements,
            args.timeout,
            &interrupted,
        )
        .await
    }
    .await;
    if let Err(why) = up {
        println!("rolling back: removing the replacements; the old containers were not touched and keep serving");
        roll_back(&docker, &replacements, args.drain).await;
        lock.finish()?;
        anyhow::bail!("rollout of {service} failed and was rolled back: {why}");
    }

    lock.record(&journal(Phase::Drain, &old, &replacements))?;
    retire(&docker, &old, &replacements, args.drain).await;
    lock.finish()?;
    println!(
        "rollout {service}: done in {}; {} new container{} {}",
        seconds(started.elapsed()),
        replacements.len(),
        plural(replacements.len()),
        if replacements.len() == 1 { "serves" } else { "serve" }
    );
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn describe_images(plans: &[Plan]) -> String {
    let mut images: Vec<&str> = plans.iter().filter_map(|p| p.body.image.as_deref()).collect();
    images.dedup();
    format!("image {}", images.join(", "))
}

/// `--project`, else teal's own compose project when it runs in one.
async fn project(settings: &Settings, docker: &Docker) -> anyhow::Result<Option<String>> {
    if settings.project.is_some() {
        return Ok(settings.project.clone());
    }
    match crate::docker::own_container_id() {
        Some(id) => Ok(crate::docker::own_container(docker, &id).await?.project),
        None => Ok(None),
    }
}

async fn old_containers(
    docker: &Docker,
    prefix: &str,
    service: &str,
    project: Option<&str>,
) -> anyhow::Result<Vec<Old>> {
    let options = ListContainersOptions {
        filters: Some(HashMap::from([
            ("label".to_owned(), vec![format!("{prefix}.service={service}")]),
            ("status".to_owned(), vec!["running".to_owned(), "paused".to_owned()]),
        ])),
        ..Default::default()
    };
    let mut old = Vec::new();
    for summary in docker.list_containers(Some(options)).await? {
        let Some(id) = summary.id else { continue };
        let inspect = match docker.inspect_container(&id, None).await {
            Ok(inspect) => inspect,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        let name = inspect
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned();
        let container_labels = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        if project.is_some_and(|p| container_labels.get(COMPOSE_PROJECT_LABEL).map(String::as_str) != Some(p)) {
            continue;
        }
        match labels::parse(prefix, &container_labels) {
            Ok(Some(_)) => old.push(Old { id, name, inspect }),
            Ok(None) => println!("skipping {name}: {prefix}.enable=false"),
            Err(error) => anyhow::bail!(
                "{name} has a bad label ({error}): teal leaves it out, and would leave its replacement out too; fix the label first"
            ),
        }
    }
    old.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(old)
}

/// The replacement of each old container, checking first that every
/// image is on this Docker host (a rollout does not pull).
async fn plan_all(docker: &Docker, prefix: &str, args: &RolloutArgs, old: &[Old]) -> anyhow::Result<Vec<Plan>> {
    let rollout_id = rollout_id();
    let mut next_number: HashMap<(String, String), u32> = HashMap::new();
    let mut plans = Vec::new();
    for old in old {
        let config = old.inspect.config.clone().unwrap_or_default();
        let image = match (&args.image, &config.image) {
            (Some(image), _) | (None, Some(image)) => image.clone(),
            (None, None) => anyhow::bail!("{} has no image reference; pass --image", old.name),
        };
        docker.inspect_image(&image).await.map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => anyhow::anyhow!(
                "image {image} is not on this Docker host; pull or build it first (teal rollout does not pull)"
            ),
            other => anyhow::Error::from(other).context(format!("cannot inspect image {image}")),
        })?;
        let old_image: Option<ImageConfig> = match &old.inspect.image {
            Some(id) => docker.inspect_image(id).await.ok().and_then(|i| i.config),
            None => None,
        };
        let mut labels = vec![(format!("{prefix}.rollout"), rollout_id.clone())];
        let name = match replica::compose_service(&old.inspect) {
            Some((project, service)) => {
                let key = (project.clone(), service.clone());
                let number = match next_number.get(&key) {
                    Some(n) => *n,
                    None => highest_compose_number(docker, &project, &service).await? + 1,
                };
                next_number.insert(key, number + 1);
                labels.push((replica::COMPOSE_NUMBER.into(), number.to_string()));
                labels.push((replica::COMPOSE_ONEOFF.into(), "False".into()));
                replica::compose_name(&old.name, &project, &service, number)
            }
            None => format!("{}-{rollout_id}", old.name),
        };
        plans.push(replica::plan(
            &old.inspect,
            old_image.as_ref(),
            Target {
                image: &image,
                name,
                labels,
            },
        ));
    }
    Ok(plans)
}

/// Six hex digits that tell this rollout's containers apart.
fn rollout_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:06x}",
        (nanos as u64 ^ u64::from(std::process::id()).rotate_left(24)) & 0xff_ffff
    )
}

/// Compose numbers containers 1, 2, ...; the next one is above every
/// number in use, stopped containers included.
async fn highest_compose_number(docker: &Docker, project: &str, service: &str) -> anyhow::Result<u32> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec![
                format!("{}={project}", replica::COMPOSE_PROJECT),
                format!("{}={service}", replica::COMPOSE_SERVICE),
            ],
        )])),
        ..Default::default()
    };
    Ok(docker
        .list_containers(Some(options))
        .await?
        .iter()
        .filter_map(|c| c.labels.as_ref()?.get(replica::COMPOSE_NUMBER)?.parse().ok())
        .max()
        .unwrap_or(0))
}

fn journal(phase: Phase, old: &[Old], replacements: &[Replacement]) -> Journal {
    Journal {
        pid: std::process::id(),
        started: lock::unix_now(),
        phase,
        old: old.iter().map(|o| o.id.clone()).collect(),
        new: replacements.iter().map(|r| r.id.clone()).collect(),
    }
}

/// Creates every replacement (each recorded in the journal as soon as it
/// exists), connects its other networks, then starts them all.
async fn start_all(
    docker: &Docker,
    prefix: &str,
    plans: &[Plan],
    old: &[Old],
    replacements: &mut Vec<Replacement>,
    lock: &mut RolloutLock,
) -> Result<(), String> {
    for (i, plan) in plans.iter().enumerate() {
        let options = CreateContainerOptions {
            name: Some(plan.name.clone()),
            ..Default::default()
        };
        let created = docker
            .create_container(Some(options), plan.body.clone())
            .await
            .map_err(|e| format!("cannot create {}: {e}", plan.name))?;
        replacements.push(Replacement {
            id: created.id.clone(),
            name: plan.name.clone(),
            replaces: i,
            routed: false,
            settle: settle(prefix, plan),
            up_since: None,
            up: false,
        });
        lock.record(&journal(Phase::Start, old, replacements))
            .map_err(|e| e.to_string())?;
        for (network, endpoint) in &plan.extra_networks {
            let request = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(endpoint.clone()),
            };
            docker
                .connect_network(network, request)
                .await
                .map_err(|e| format!("cannot connect {} to network {network}: {e}", plan.name))?;
        }
    }
    for r in replacements.iter() {
        docker
            .start_container(&r.id, None)
            .await
            .map_err(|e| format!("cannot start {}: {e}", r.name))?;
    }
    Ok(())
}

/// How long a replacement must stay UP in HAProxy to have passed a check:
/// its service's check interval, plus a second for the check to run.
fn settle(prefix: &str, plan: &Plan) -> Duration {
    let interval = plan
        .body
        .labels
        .as_ref()
        .and_then(|l| labels::parse(prefix, l).ok().flatten())
        .map_or(labels::DEFAULT_HEALTH_INTERVAL, |l| {
            Duration::from_millis(l.health.interval_ms)
        });
    interval + Duration::from_secs(1)
}

/// Removes the replacements. One that was routed may be serving: it gets
/// the drain grace period like an old container would.
async fn roll_back(docker: &Docker, replacements: &[Replacement], drain: Duration) {
    let removals = replacements.iter().map(|r| async move {
        let grace = if r.routed { drain } else { Duration::ZERO };
        match stop_and_remove(docker, &r.id, grace, true).await {
            Ok(()) => println!("  removed {}", r.name),
            Err(error) => println!(
                "  could not remove {} ({}): {error}",
                r.name,
                &r.id[..12.min(r.id.len())]
            ),
        }
    });
    futures::future::join_all(removals).await;
}

/// Stops and removes the old containers, all at once: every replacement is
/// UP, so the service keeps its capacity.
async fn retire(docker: &Docker, old: &[Old], replacements: &[Replacement], drain: Duration) {
    println!(
        "stopping {} old container{} (grace period {}; teal drains each on the stop request)",
        old.len(),
        plural(old.len()),
        seconds(drain)
    );
    let stops = old.iter().map(|o| async move {
        let started = Instant::now();
        match stop_and_remove(docker, &o.id, drain, false).await {
            Ok(()) => println!("  stopped and removed {} ({})", o.name, seconds(started.elapsed())),
            Err(error) => println!("  could not stop and remove {}: {error}", o.name),
        }
    });
    futures::future::join_all(stops).await;
    for r in replacements {
        let old = &old[r.replaces];
        if replica::compose_service(&old.inspect).is_some() {
            continue; // compose names by number; the new number is right
        }
        let options = RenameContainerOptions { name: old.name.clone() };
        match docker.rename_container(&r.id, options).await {
            Ok(()) => println!("  renamed {} to {}", r.name, old.name),
            Err(error) => println!("  kept the name {} (cannot rename it to {}: {error})", r.name, old.name),
        }
    }
}

/// `docker stop -t GRACE` then `docker rm`; already stopped or gone is fine.
/// `volumes`: also remove the container's anonymous volumes.
async fn stop_and_remove(
    docker: &Docker,
    id: &str,
    grace: Duration,
    volumes: bool,
) -> Result<(), bollard::errors::Error> {
    let options = StopContainerOptions {
        t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
        signal: None,
    };
    match docker.stop_container(id, Some(options)).await {
        Ok(()) => {}
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304 | 404, ..
        }) => {}
        Err(error) => return Err(error),
    }
    let options = RemoveContainerOptions {
        force: true,
        v: volumes,
        ..Default::default()
    };
    match docker.remove_container(id, Some(options)).await {
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// A rollout that died left its journal: undo or finish its last phase,
/// so the service is whole again before this rollout starts.
async fn recover(docker: &Docker, service: &str, journal: &Journal, drain: Duration) {
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
    println!("an earlier rollout of {service} (pid {}) ended {what}", journal.pid);
    for id in ids {
        let short = &id[..12.min(id.len())];
        match stop_and_remove(docker, id, drain, volumes).await {
            Ok(()) => println!("  removed {short}"),
            Err(error) => println!("  could not remove {short}: {error}"),
        }
    }
}

/// First SIGINT/SIGTERM: roll back (while replacements are being started
/// and awaited). Second: leave at once; the next rollout cleans up.
async fn interrupt_on_signal(interrupted: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("teal rollout: interrupted (a second signal leaves at once; the next rollout cleans up)");
    interrupted.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    std::process::exit(130);
}
