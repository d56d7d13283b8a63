//! Wiring: the tasks of `teal run`.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::acme::Acme;
use crate::apply::{self, Applier, Supervisor};
use crate::controls::ServiceControls;
use crate::docker::{self, Watcher};
use crate::drained::Drained;
use crate::model_owner::{scope, ModelOwner};
use crate::reconcile::{ApplyOutputs, Driver, Events, Isolation, Rendering};
use crate::render::{ContextSettings, Renderer, HOLD_SCRIPT};
use crate::settings::{ReloadMode, Settings};
use crate::slots::LiveSlots;
use crate::state_file;
use crate::status::{self, DockerStatus, Metrics, StatusSources};
use crate::watch::Watches;
use crate::weights::CanaryWeights;

/// `teal run`: follow Docker and keep HAProxy in step until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    apply::create_private_dir(&settings.state_dir)
        .with_context(|| format!("cannot create --state-dir {}", settings.state_dir.display()))?;
    if let Some(dir) = settings.config.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // HAProxy warns when the state file it is told to load is missing.
    let state_file = settings.server_state_file();
    if !state_file.exists() {
        apply::write_atomic(&state_file, b"")?;
    }
    // Every config loads it; this binary's version replaces an older one.
    apply::write_atomic(&settings.hold_script(), HOLD_SCRIPT.as_bytes())?;
    apply::create_private_dir(&settings.hold_sockets())
        .with_context(|| format!("cannot create {}", settings.hold_sockets().display()))?;
    // Fail fast on a template that does not parse: nothing good came before it.
    let rendering = Rendering::new(
        Renderer::load(settings.template.as_deref())?,
        ContextSettings::new(&settings)?,
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(crate::signal::cancel_on_stop(shutdown.clone()));
    let scope = scope(&settings).await?;

    let metrics = Arc::new(Metrics::default());
    let (reports_tx, reports_rx) = mpsc::channel(1024);
    let watcher = Watcher {
        host: settings.docker_host.clone(),
        label_prefix: settings.label_prefix.clone(),
        reports: reports_tx.clone(),
        metrics: metrics.clone(),
    };
    let swarm_watcher = docker::swarm::SwarmWatcher {
        host: settings.docker_host.clone(),
        label_prefix: settings.label_prefix.clone(),
        mode: settings.swarm,
        reports: reports_tx,
    };
    let mut watches = Watches::new()?;
    let (snapshots_tx, model_snapshots) = watch::channel(None);
    // Render, apply and status read the snapshot routed through the
    // operator's choices: blue/green slots, drained containers, canary
    // weights, then maintenance and pauses.
    let slots_edits = watches.file(&state_file::path::<LiveSlots>(&settings.state_dir))?;
    let slotted = state_file::route_snapshots::<LiveSlots>(&settings.state_dir, model_snapshots, slots_edits)?;
    let drained_edits = watches.file(&state_file::path::<Drained>(&settings.state_dir))?;
    let drained = state_file::route_snapshots::<Drained>(&settings.state_dir, slotted, drained_edits)?;
    let weights_edits = watches.file(&state_file::path::<CanaryWeights>(&settings.state_dir))?;
    let weighted = state_file::route_snapshots::<CanaryWeights>(&settings.state_dir, drained, weights_edits)?;
    let controls_edits = watches.file(&state_file::path::<ServiceControls>(&settings.state_dir))?;
    let snapshots_rx = state_file::route_snapshots::<ServiceControls>(&settings.state_dir, weighted, controls_edits)?;
    let (docker_tx, docker_rx) = watch::channel(DockerStatus::default());
    let (apply_tx, apply_rx) = watch::channel(None);
    let supervisor = match settings.reload {
        ReloadMode::Supervise => Some(Supervisor::start(&settings, metrics.clone(), shutdown.clone()).await),
        _ => None,
    };
    let (refused_tx, refused_rx) = watch::channel(Default::default());
    let (certificates_tx, certificates_rx) = watch::channel(Vec::new());
    let acme = Acme::new(&settings, snapshots_rx.clone(), certificates_tx.clone()).map_err(anyhow::Error::msg)?;
    let sources = StatusSources {
        snapshots: snapshots_rx.clone(),
        docker: docker_rx,
        last_apply: apply_rx,
        metrics: metrics.clone(),
        admin_socket: settings.admin_socket(),
        haproxy: supervisor.as_ref().map(Supervisor::status),
        refused: refused_rx,
        certificates: certificates_rx,
        certs_dir: settings.certs.clone(),
        state_dir: settings.state_dir.clone(),
    };
    let listener = status::Listener {
        bind: settings.status_bind,
        users: settings.status_users.clone(),
        state_dir: &settings.state_dir,
    };
    let status_task = status::serve(listener, sources, shutdown.clone()).await?;
    let docker_task = tokio::spawn(watcher.run(shutdown.clone()));
    let swarm_task = tokio::spawn(swarm_watcher.run(shutdown.clone()));
    let model = ModelOwner {
        scope,
        snapshots: snapshots_tx,
        docker: docker_tx,
        metrics: metrics.clone(),
    };
    let model_task = tokio::spawn(model.run(reports_rx));
    let acme_task = match acme {
        Some(acme) => tokio::spawn(acme.run(shutdown.clone())),
        None => tokio::spawn(crate::acme::report_disabled(
            snapshots_rx.clone(),
            certificates_tx,
            shutdown.clone(),
        )),
    };

    // Without the flag, a closed channel: nothing ever arrives.
    let cert_changes = match &settings.certs {
        Some(dir) => watches.dir(dir, |_| true)?,
        None => mpsc::channel(1).1,
    };
    let template_edits = match &settings.template {
        Some(path) => watches.file(path)?,
        None => mpsc::channel(1).1,
    };
    let docker_for_reload = match &settings.reload {
        ReloadMode::Container(_) => Some(docker::connect(settings.docker_host.as_deref()).await?),
        _ => None,
    };
    let driver = Driver {
        executor: Applier::new(&settings, docker_for_reload, supervisor),
        debounce: settings.debounce,
        template: settings.template.clone(),
        rendering,
        outputs: ApplyOutputs {
            last_apply: apply_tx,
            metrics,
        },
        // A listener teal can bind is one HAProxy can, unless HAProxy runs
        // in another network namespace (its own container).
        isolation: Isolation::new(!matches!(settings.reload, ReloadMode::Container(_)), refused_tx),
    };
    let events = Events {
        snapshots: snapshots_rx,
        template_edits,
        cert_changes,
        shutdown: shutdown.clone(),
    };
    let applier = driver.run(events).await;
    shutdown.cancel();
    applier.stop().await;
    let _ = docker_task.await;
    let _ = swarm_task.await;
    let _ = model_task.await;
    let _ = acme_task.await;
    let _ = status_task.await;
    Ok(())
}
