//! `teal maintenance SERVICE on|off`, `teal pause SERVICE`, `teal resume
//! SERVICE`: write the change to `<state-dir>/controls.json` (see
//! [`super`]), then wait until the daemon's `/status` shows it and HAProxy
//! has reloaded since. Without a daemon answering, the change is saved and
//! applies when `teal run` starts.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::model::labels::Mode;
use crate::model::{Controls, Maintenance, Pause};
use crate::settings::{ControlSettings, ServiceControl};
use crate::status::{self, StatusReport};

use super::{store, unix_now, ServiceControls};
use crate::state_file;

const POLL: Duration = Duration::from_millis(100);

pub async fn run(settings: ControlSettings) -> anyhow::Result<()> {
    let service = &settings.service;
    let report = status::fetch(settings.status_bind, &settings.state_dir).await.ok();
    if let Some(found) = report
        .as_ref()
        .and_then(|r| r.services.iter().find(|s| s.name == service.as_str()))
    {
        anyhow::ensure!(
            found.mode == Mode::Http,
            "{service} is a tcp service: maintenance and pause are for http services (HAProxy cannot hold or \
             answer a tcp connection for the app)"
        );
    }
    let wanted = store(&settings.state_dir, service, |controls| match &settings.control {
        ServiceControl::MaintenanceOn { message } => {
            controls.maintenance = Some(Maintenance {
                message: message.clone(),
                since: unix_now(),
            })
        }
        ServiceControl::MaintenanceOff => controls.maintenance = None,
        ServiceControl::Pause { max } => {
            controls.pause = Some(Pause {
                until: pause_end(SystemTime::now(), *max),
            })
        }
        ServiceControl::Resume => controls.pause = None,
    })?;
    let done = describe(&settings.control, &wanted);
    let path = state_file::path::<ServiceControls>(&settings.state_dir);
    if report.is_none() {
        println!(
            "{service}: {done}, saved in {}; no daemon answers at {}, it applies when it starts",
            path.display(),
            settings.status_bind
        );
        return Ok(());
    }
    let deadline = Instant::now() + settings.timeout;
    loop {
        match status::fetch(settings.status_bind, &settings.state_dir).await {
            Ok(report) if !routed(&report, service.as_str()) => {
                println!("{service}: {done}; no such service is routed now, it applies when one is");
                return Ok(());
            }
            Ok(report) if loaded(&report, service.as_str(), &wanted) => {
                println!("{service}: {done}");
                return Ok(());
            }
            _ => {}
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{service}: {done} in {}, but the daemon at {} did not apply it within {:?}: does it run with \
             --state-dir {}? (see its log)",
            path.display(),
            settings.status_bind,
            settings.timeout,
            settings.state_dir.display()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// When a pause of `max` given at `now` ends: whole seconds (HAProxy's
/// `date` counts seconds), rounded up from `now + max` so that the pause
/// lasts at least `max` (rounding `now` down first would cut up to a
/// second off it).
fn pause_end(now: SystemTime, max: Duration) -> u64 {
    let end = now.duration_since(UNIX_EPOCH).unwrap_or_default() + max;
    end.as_secs() + u64::from(end.subsec_nanos() > 0)
}

fn describe(control: &ServiceControl, now: &Controls) -> String {
    match control {
        ServiceControl::MaintenanceOn { .. } => "in maintenance (every request gets the maintenance page)".into(),
        ServiceControl::MaintenanceOff => "maintenance off".into(),
        ServiceControl::Pause { max } => format!(
            "paused: requests are held until `teal resume` or for at most {}",
            humantime::format_duration(*max)
        ),
        ServiceControl::Resume if now.maintenance.is_some() => "resumed (still in maintenance)".into(),
        ServiceControl::Resume => "resumed: held requests go on".into(),
    }
}

fn routed(report: &StatusReport, service: &str) -> bool {
    report.services.iter().any(|s| s.name == service)
}

/// The config HAProxy last loaded sets `wanted` on `service`.
fn loaded(report: &StatusReport, service: &str, wanted: &Controls) -> bool {
    let loaded = report.last_reload.as_ref().and_then(|r| r.controls.get(service));
    loaded.cloned().unwrap_or_default() == *wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_ends_no_sooner_than_its_max_after_the_command() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(pause_end(at(100_900), Duration::from_secs(2)), 103);
        assert_eq!(pause_end(at(100_000), Duration::from_secs(2)), 102);
        assert_eq!(pause_end(at(100_000), Duration::from_millis(1500)), 102);
    }
}
