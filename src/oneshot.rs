//! The one-shot commands: `teal render`, `teal check` and `teal status`.

use crate::apply;
use crate::controls::{self, ServiceControls};
use crate::docker;
use crate::model::{ContainerUpdate, Inventory, Snapshot};
use crate::render::{Context, ContextSettings, Renderer, HOLD_SCRIPT};
use crate::settings::{Settings, StatusSettings};
use crate::state_file::Choice as _;
use crate::status;

/// Lists once and builds the snapshot, routed through the operator's
/// choices (slots, drained, canary weights, controls): the shared start of `render` and
/// `check`.
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
    let drained = crate::drained::Drained::load(&settings.state_dir)?;
    let weights = crate::weights::CanaryWeights::load(&settings.state_dir)?;
    let controls = ServiceControls::load(&settings.state_dir)?;
    let snapshot = inventory.snapshot(&crate::model_owner::scope(settings).await?);
    Ok(controls.route(weights.route(drained.route(live_slots.route(snapshot)))))
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
    // Removed when dropped, whatever happens.
    let dir = tempfile::Builder::new().prefix("teal-check-").tempdir()?;
    let snapshot = discover(&settings).await?;
    // HAProxy loads the hold script and maintenance pages while checking:
    // from here, so that checking needs no writable --state-dir.
    let mut context_settings = ContextSettings::new(&settings)?;
    let script = dir.path().join("hold.lua");
    apply::write_atomic(&script, HOLD_SCRIPT.as_bytes())?;
    context_settings.hold.script = script.display().to_string();
    let pages = dir.path().join("maintenance");
    controls::write_pages(&pages, &ServiceControls::load(&settings.state_dir)?);
    context_settings.maintenance_pages = pages.display().to_string();
    let text = Renderer::load(settings.template.as_deref())?.render(&Context::new(&context_settings, &snapshot))?;
    let path = dir.path().join("haproxy.cfg");
    apply::write_atomic(&path, text.as_bytes())?;
    apply::validate(&settings.haproxy, &path).await?;
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

/// `teal status`: ask the running daemon and print a table (or its JSON).
pub async fn status(settings: StatusSettings) -> anyhow::Result<()> {
    let report = status::fetch(settings.status_bind, &settings.state_dir).await?;
    if settings.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        use std::io::IsTerminal;
        status::print_table(&report, std::io::stdout().is_terminal());
    }
    Ok(())
}
