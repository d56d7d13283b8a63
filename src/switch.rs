//! `teal switch SERVICE`: blue/green, flip which slot the live frontend
//! serves (the other one goes to the preview listener).
//!
//! The choice is written to `<state-dir>/slots.json` (see [`crate::slots`]);
//! the daemon running on that state dir picks it up and reloads. Before
//! writing, the slot going live must have a server UP in HAProxy (the
//! daemon's `/status` says so), unless `--force`; after writing, the command
//! waits until `/status` shows the flip applied.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::deploy::{Deploy, Outcome};
use crate::model::labels::{ServiceName, Slot};
use crate::settings::SwitchSettings;
use crate::slots::{self, LiveSlots};
use crate::status::{self, ServerStatus, StatusReport};

const POLL: Duration = Duration::from_millis(100);

pub async fn run(settings: SwitchSettings) -> anyhow::Result<()> {
    let service = &settings.service;
    let current = LiveSlots::load(&settings.state_dir)?.live(service);
    let target = settings.to.unwrap_or(slots::other(current));
    if target == current {
        println!("{service}: {target} is live already");
        return Ok(());
    }
    let preview = slots::preview_name(service).map_err(anyhow::Error::msg)?;
    let report = status::fetch(settings.status_bind, &settings.state_dir).await;
    match &report {
        Ok(report) => {
            let going_live = slot_servers(report, service, &preview, target);
            let up = going_live.iter().filter(|s| s.is_up()).count();
            anyhow::ensure!(
                up > 0 || settings.force,
                "no {} server of {service} is UP in HAProxy ({} known to teal): switching would send live \
                 traffic to nothing. Start the {} containers first, or pass --force",
                target,
                going_live.len(),
                target
            );
        }
        Err(error) if !settings.force => {
            return Err(anyhow::anyhow!("{error:#}")).context(format!(
                "cannot check that the {} slot is UP; pass --force to switch anyway",
                target
            ));
        }
        Err(_) => {}
    }

    let ids = |report: &StatusReport, slot: Slot| -> Vec<String> {
        slot_servers(report, service, &preview, slot)
            .iter()
            .map(|s| s.container_id.clone())
            .collect()
    };
    let (old_ids, new_ids) = match &report {
        Ok(report) => (ids(report, current), ids(report, target)),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let deploy = match report {
        Ok(_) => Some(Deploy::start(settings.status_bind, &settings.state_dir, service.as_str(), "switch").await),
        Err(_) => None,
    };
    slots::store(&settings.state_dir, service, Some(target))?;
    let path = crate::state_file::path::<LiveSlots>(&settings.state_dir);
    let Some(deploy) = deploy else {
        println!(
            "{service}: {} is live, saved in {}; no daemon answers at {}, it applies the choice when it starts",
            target,
            path.display(),
            settings.status_bind
        );
        return Ok(());
    };
    let old_ids: Vec<&str> = old_ids.iter().map(String::as_str).collect();
    let new_ids: Vec<&str> = new_ids.iter().map(String::as_str).collect();
    let deadline = Instant::now() + settings.timeout;
    loop {
        if let Ok(report) = status::fetch(settings.status_bind, &settings.state_dir).await {
            if applied(&report, service, target) {
                let live = slot_servers(&report, service, &preview, target);
                let other = slot_servers(&report, service, &preview, slots::other(target));
                println!(
                    "{service}: {} is live ({} of {} server(s) UP); {} is on the preview listener ({} server(s))",
                    target,
                    live.iter().filter(|s| s.is_up()).count(),
                    live.len(),
                    slots::other(target),
                    other.len()
                );
                deploy
                    .finish(&settings.state_dir, Outcome::Completed, None, &old_ids, &new_ids)
                    .await;
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            let why = format!(
                "{service}: {} is live in {}, but the daemon at {} did not apply it within {:?}: does it run with \
                 --state-dir {}? (see its log)",
                target,
                path.display(),
                settings.status_bind,
                settings.timeout,
                settings.state_dir.display()
            );
            deploy
                .finish(
                    &settings.state_dir,
                    Outcome::Failed,
                    Some(why.clone()),
                    &old_ids,
                    &new_ids,
                )
                .await;
            anyhow::bail!(why);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The servers of `slot`, on either backend of the service.
fn slot_servers<'a>(
    report: &'a StatusReport,
    service: &ServiceName,
    preview: &ServiceName,
    slot: Slot,
) -> Vec<&'a ServerStatus> {
    report
        .services
        .iter()
        .filter(|s| s.name == service.as_str() || s.name == preview.as_str())
        .flat_map(|s| s.servers.iter())
        .filter(|s| s.slot == Some(slot))
        .collect()
}

/// The live backend holds no server of the other slot, and HAProxy runs
/// the new config (a server of the new live slot is UP in it), unless
/// that slot has none.
fn applied(report: &StatusReport, service: &ServiceName, live: Slot) -> bool {
    let Some(backend) = report.services.iter().find(|s| s.name == service.as_str()) else {
        return false;
    };
    let stale = backend.servers.iter().any(|s| s.slot == Some(slots::other(live)));
    let mut going_live = backend.servers.iter().filter(|s| s.slot == Some(live)).peekable();
    let nothing_to_route = going_live.peek().is_none();
    !stale && (nothing_to_route || going_live.any(ServerStatus::is_up))
}
