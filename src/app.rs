//! Wiring: the tasks of `teal run`, and the one-shot `render` and `check`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use notify::Watcher as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::apply::{self, Applier, ApplyError, Outcome};
use crate::docker::{self, Report, Watcher};
use crate::model::{Change, ContainerUpdate, Inventory, Scope, Snapshot};
use crate::render::{Context, ContextSettings, Renderer};
use crate::settings::{ReloadMode, Settings};
use crate::status::{self, ApplyRecord, DockerStatus, Metrics, ResultLabel, StatusSources};

/// `teal run`: follow Docker and keep HAProxy in step until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.state_dir)
        .with_context(|| format!("cannot create --state-dir {}", settings.state_dir.display()))?;
    if let Some(dir) = settings.config.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // HAProxy warns when the state file it is told to load is missing.
    let state_file = settings.server_state_file();
    if !state_file.exists() {
        apply::write_atomic(&state_file, b"")?;
    }
    // Fail fast on a template that does not parse: nothing good came before it.
    Renderer::load(settings.template.as_deref())?;

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
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
    let (snapshots_tx, model_snapshots) = watch::channel(None);
    // Blue/green: render, apply and status read the snapshot with slots routed.
    let snapshots_rx = crate::slots::route_snapshots(&settings.state_dir, model_snapshots)?;
    let (docker_tx, docker_rx) = watch::channel(DockerStatus::default());
    let (apply_tx, apply_rx) = watch::channel(None);
    let sources = StatusSources {
        snapshots: snapshots_rx.clone(),
        docker: docker_rx,
        last_apply: apply_rx,
        metrics: metrics.clone(),
        admin_socket: settings.admin_socket(),
    };
    let status_task = status::serve(settings.status_bind, sources, shutdown.clone()).await?;
    let docker_task = tokio::spawn(watcher.run(shutdown.clone()));
    let swarm_task = tokio::spawn(swarm_watcher.run(shutdown.clone()));
    let model = ModelOwner {
        scope,
        snapshots: snapshots_tx,
        docker: docker_tx,
        metrics: metrics.clone(),
    };
    let model_task = tokio::spawn(model.run(reports_rx));
    let docker_for_reload = match &settings.reload {
        ReloadMode::Container(_) => Some(docker::connect(settings.docker_host.as_deref()).await?),
        _ => None,
    };
    let applier = Applier::new(&settings, docker_for_reload, shutdown.clone());
    let outputs = ApplyOutputs {
        last_apply: apply_tx,
        metrics,
    };
    let result = render_and_apply(&settings, applier, snapshots_rx, outputs, shutdown.clone()).await;
    shutdown.cancel();
    let _ = docker_task.await;
    let _ = swarm_task.await;
    let _ = model_task.await;
    let _ = status_task.await;
    result
}

/// Which containers are ours and which networks HAProxy can reach: when
/// teal runs in a container, its own networks and compose project.
async fn scope(settings: &Settings) -> anyhow::Result<Scope> {
    let mut scope = Scope {
        label_prefix: settings.label_prefix.clone(),
        project: settings.project.clone(),
        own_networks: None,
        frontend_ports: settings.frontend_ports(),
    };
    if let Some(id) = docker::own_container_id() {
        let docker = docker::connect(settings.docker_host.as_deref()).await?;
        let own = docker::own_container(&docker, &id)
            .await
            .context("teal runs in a container but cannot inspect it")?;
        tracing::info!(networks = ?own.networks, project = ?own.project, "teal runs in a container");
        scope.own_networks = Some(own.networks.into_iter().collect::<BTreeSet<_>>());
        if scope.project.is_none() {
            scope.project = own.project;
        }
    }
    Ok(scope)
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}

/// The model's one owner: applies Docker's reports, publishes snapshots and
/// the connection state, and logs each decision once.
struct ModelOwner {
    scope: Scope,
    snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    docker: watch::Sender<DockerStatus>,
    metrics: Arc<Metrics>,
}

impl ModelOwner {
    async fn run(self, mut reports: mpsc::Receiver<Report>) {
        let mut inventory = Inventory::default();
        let mut current = Snapshot::default();
        let mut listed = false;
        while let Some(report) = reports.recv().await {
            let update = match report {
                Report::Connected => {
                    self.metrics.docker_connected.set(1);
                    self.docker.send_replace(DockerStatus {
                        connected: true,
                        error: None,
                    });
                    continue;
                }
                Report::Disconnected(error) => {
                    self.metrics.docker_connected.set(0);
                    self.docker.send_replace(DockerStatus {
                        connected: false,
                        error: Some(error),
                    });
                    continue;
                }
                Report::Update(update) => update,
            };
            let resync = matches!(update, ContainerUpdate::Resync(_));
            if !inventory.apply(update) && (listed || !resync) {
                continue;
            }
            listed = true;
            let next = inventory.snapshot(&self.scope);
            log_changes(&current, &next);
            self.metrics.observe_snapshot(&next);
            current = next.clone();
            self.snapshots.send_replace(Some(Arc::new(next)));
        }
    }
}

fn log_changes(before: &Snapshot, after: &Snapshot) {
    for change in before.changes(after) {
        match change {
            Change::ServerAdded { service, server } => tracing::info!(
                %service, container = %server.container_name, address = %server.address, port = server.port,
                state = ?server.state, "server added"
            ),
            Change::ServerRemoved { service, server } => {
                tracing::info!(%service, container = %server.container_name, "server removed")
            }
            Change::ServerUpdated { service, server, was } => tracing::info!(
                %service, container = %server.container_name, from = ?was.state, to = ?server.state,
                reason = server.reason.as_deref().unwrap_or(""), weight = server.weight, "server state changed"
            ),
            Change::ContainerExcluded(excluded) => tracing::warn!(
                container = %excluded.container_name, reason = %excluded.reason, "container left out"
            ),
        }
    }
}

/// How long changes must pause before the file written for runtime API
/// changes is checked: a rollout's add, drain and remove are one check, made
/// after the rollout rather than during it.
const MIRROR_CHECK_AFTER: Duration = Duration::from_secs(5);

/// Renders each new snapshot (after the debounce) or template edit and
/// applies it. Errors keep the last good config and are logged.
async fn render_and_apply(
    settings: &Settings,
    mut applier: Applier,
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    outputs: ApplyOutputs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut context_settings = ContextSettings::new(settings)?;
    let (certs_tx, mut cert_changes) = mpsc::channel(1);
    let _certs_watch = match &settings.certs {
        Some(dir) => Some(crate::tls::watch(dir, certs_tx)?),
        None => None,
    };
    let (template_tx, mut template_edits) = mpsc::channel(1);
    let _template_watch = match &settings.template {
        Some(path) => Some(watch_template(path, template_tx)?),
        None => None,
    };
    let mut renderer = Renderer::load(settings.template.as_deref())?;
    // The template or the certificates changed since the last apply: only
    // then may the last applied snapshot render differently now.
    let mut rendering_changed = false;
    let mut template_edited = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = snapshots.changed() => if changed.is_err() { break },
            Some(()) = template_edits.recv() => template_edited = true,
            Some(()) = cert_changes.recv() => {}
            _ = tokio::time::sleep(MIRROR_CHECK_AFTER), if applier.mirror_unchecked() => {
                if let Err(error) = applier.check_mirror().await {
                    tracing::error!(%error, "the config written for runtime changes does not load; HAProxy keeps running them, but the next reload will be refused");
                    outputs.metrics.validation_failures.inc();
                    outputs.record(Err(error.to_string()));
                }
                continue;
            }
        }
        let changed_at = Instant::now();
        // Taking servers out of rotation (a stop, a crash, a failed health
        // check) cannot wait: every millisecond sends requests to a server
        // that is going away. Anything else waits out the debounce, so a
        // burst becomes one update.
        let urgent = match (applier.applied(), snapshots.borrow().as_deref()) {
            (Some((before, _)), Some(next)) => before.only_takes_servers_out(next),
            _ => false,
        };
        if !urgent {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(settings.debounce) => {}
            }
        }
        if std::mem::take(&mut template_edited) {
            // Read after the debounce, so a template being written is whole:
            // one caught between truncate and write renders an empty config.
            match Renderer::load(settings.template.as_deref()) {
                Ok(next) => {
                    tracing::info!("template changed; re-rendering");
                    renderer = next;
                    rendering_changed = true;
                }
                Err(error) => tracing::error!(%error, "template edit refused; the last good config keeps serving"),
            }
        }
        if settings.certs.is_some() {
            // Read after the debounce, so a certificate being written is whole.
            match ContextSettings::new(settings) {
                Ok(next) if next.tls != context_settings.tls => {
                    tracing::info!("certificates changed; re-rendering");
                    context_settings = next;
                    rendering_changed = true;
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "certificates not re-read; the last good ones stay"),
            }
        }
        let Some(snapshot) = snapshots.borrow_and_update().clone() else {
            continue;
        };
        let render_started = Instant::now();
        let text = match renderer.render(&Context::new(&context_settings, &snapshot)) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "render failed; the last good config keeps serving");
                outputs.metrics.render_failures.inc();
                outputs.record(Err(error.to_string()));
                continue;
            }
        };
        outputs
            .metrics
            .render_duration
            .observe(render_started.elapsed().as_secs_f64());
        // The runtime API can only carry server changes: it may be used when
        // the last applied snapshot, rendered now, still gives the last
        // applied text (same template, settings and certificates). Rendered
        // again only after an edit: at 10,000 servers a render takes 40-70 ms.
        let only_servers_changed = applier.applied().is_some_and(|(before, text)| {
            !rendering_changed
                || renderer
                    .render(&Context::new(&context_settings, before))
                    .is_ok_and(|t| t == text)
        });
        let apply_started = Instant::now();
        let result = applier.apply(&snapshot, text, only_servers_changed).await;
        // Unchanged leaves the last applied snapshot as it was, rendered
        // before any edit.
        if matches!(&result, Ok(outcome) if !matches!(outcome, Outcome::Unchanged)) {
            rendering_changed = false;
        }
        outputs.observe(&result, apply_started, changed_at);
    }
    applier.stop().await;
    Ok(())
}

/// Where the apply loop reports what it did: `/status` and the metrics.
struct ApplyOutputs {
    last_apply: watch::Sender<Option<ApplyRecord>>,
    metrics: Arc<Metrics>,
}

impl ApplyOutputs {
    fn observe(&self, result: &Result<Outcome, ApplyError>, started: Instant, changed_at: Instant) {
        let metrics = &self.metrics;
        let ok = ResultLabel { result: "ok" };
        let failed = ResultLabel { result: "failed" };
        match result {
            Ok(Outcome::Unchanged) => return,
            Ok(outcome) => {
                tracing::info!(?outcome, took = ?started.elapsed(), "config applied");
                match outcome {
                    Outcome::Runtime(n) => metrics.runtime_updates.get_or_create(&ok).inc_by(*n as u64),
                    _ => metrics.reloads.get_or_create(&ok).inc(),
                };
                metrics.event_to_apply.observe(changed_at.elapsed().as_secs_f64());
            }
            Err(error) => {
                tracing::error!(%error, "config not applied");
                match error {
                    ApplyError::Rejected(_) => metrics.validation_failures.inc(),
                    _ => metrics.reloads.get_or_create(&failed).inc(),
                };
            }
        }
        metrics.reload_duration.observe(started.elapsed().as_secs_f64());
        self.record(result.as_ref().map(outcome_word).map_err(|e| e.to_string()));
    }

    fn record(&self, result: Result<&'static str, String>) {
        self.last_apply.send_replace(Some(ApplyRecord {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            ok: result.is_ok(),
            outcome: result.as_ref().ok().map(|o| o.to_string()),
            error: result.err(),
        }));
    }
}

fn outcome_word(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Unchanged => "unchanged",
        Outcome::Runtime(_) => "runtime",
        Outcome::Reloaded => "reloaded",
        Outcome::Started => "started",
        Outcome::Written => "written",
    }
}

/// Editors replace files rather than write them, so watch the directory and
/// pick out the template's name.
fn watch_template(path: &Path, edits: mpsc::Sender<()>) -> anyhow::Result<notify::RecommendedWatcher> {
    let path = std::path::absolute(path).with_context(|| format!("bad --template path {}", path.display()))?;
    let dir = path.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
    let name = path.file_name().map(|n| n.to_owned());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if event.paths.iter().any(|p| p.file_name() == name.as_deref()) && !event.kind.is_access() {
                let _ = edits.try_send(());
            }
        }
    })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {} for template edits", dir.display()))?;
    Ok(watcher)
}

/// Lists once and builds the snapshot: the shared start of `render` and `check`.
async fn discover(settings: &Settings) -> anyhow::Result<Snapshot> {
    let docker = docker::connect(settings.docker_host.as_deref()).await?;
    let facts = docker::list(&docker, &settings.label_prefix).await?;
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(facts));
    let host = settings.docker_host.as_deref();
    if let Some(tasks) = docker::swarm::list_once(&docker, host, &settings.label_prefix, settings.swarm).await? {
        inventory.apply(ContainerUpdate::SwarmResync(tasks));
    }
    let live_slots = crate::slots::LiveSlots::load(&settings.state_dir)?;
    Ok(crate::slots::route(
        inventory.snapshot(&scope(settings).await?),
        &live_slots,
    ))
}

/// `teal render`: print the config (or with `context`, the template context).
pub async fn render(settings: Settings, context: bool) -> anyhow::Result<()> {
    let snapshot = discover(&settings).await?;
    let context_settings = ContextSettings::new(&settings)?;
    let template_context = Context::new(&context_settings, &snapshot);
    if context {
        println!("{}", serde_json::to_string_pretty(&template_context)?);
    } else {
        print!(
            "{}",
            Renderer::load(settings.template.as_deref())?.render(&template_context)?
        );
    }
    Ok(())
}

/// `teal check`: render and validate with `haproxy -c`.
pub async fn check(settings: Settings) -> anyhow::Result<()> {
    let snapshot = discover(&settings).await?;
    let context_settings = ContextSettings::new(&settings)?;
    let text = Renderer::load(settings.template.as_deref())?.render(&Context::new(&context_settings, &snapshot))?;
    let dir = tempfile_dir()?;
    let path = dir.join("haproxy.cfg");
    apply::write_atomic(&path, text.as_bytes())?;
    let result = apply::validate(&settings.haproxy, &path).await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    for excluded in &snapshot.excluded {
        println!("left out: {} ({})", excluded.container_name, excluded.reason);
    }
    println!(
        "config is valid: {} services, {} servers",
        snapshot.services.len(),
        snapshot.services.iter().map(|s| s.servers.len()).sum::<usize>()
    );
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("teal-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// `teal status`: ask the running daemon and print a table (or its JSON).
pub async fn status(settings: Settings, json: bool) -> anyhow::Result<()> {
    let report = status::fetch(settings.status_bind).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        use std::io::IsTerminal;
        status::print_table(&report, std::io::stdout().is_terminal());
    }
    Ok(())
}
