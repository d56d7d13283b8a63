//! `teal rollout --canary 10,50,100`: once the replacements are UP, give
//! them each step's share of the service's traffic, hold the step for
//! `--step` and judge it from HAProxy's per-server counters, new servers
//! against old ([`super::analysis`]). The first step that fails ends the
//! canary; the caller rolls back.
//!
//! The share is a choice in the state dir ([`crate::weights`]) that the
//! daemon turns into server weights through HAProxy's runtime API: this
//! command never talks to HAProxy itself, and a restart of the daemon
//! mid-canary keeps the weights.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::analysis::{judge, Failure, Judgement};
use super::progress::seconds;
use crate::deploy::{CanaryReport, Sampler, StepReport, Traffic};
use crate::model::labels::ServiceName;
use crate::model::{Canary, HeaderName};
use crate::settings::CanarySettings;
use crate::status::{self, StatusReport};

/// A bad version fails more requests the longer a failure goes unseen:
/// the counters are read more often than the deploy's sampler does.
const POLL: Duration = Duration::from_millis(100);
/// How long the daemon gets to take up a new share.
const APPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// A step short of `--min-requests` is held up to this many `--step`s.
pub const MAX_STEP_STRETCH: u32 = 5;

/// The service, its daemon and the two sets of servers.
pub struct Sides<'a> {
    pub service: &'a ServiceName,
    pub status_bind: SocketAddr,
    pub state_dir: &'a Path,
    pub deploy: &'a str,
    pub old: &'a [&'a str],
    /// (container id, name) of each replacement.
    pub new: &'a [(&'a str, &'a str)],
    /// `--canary-header`.
    pub header: Option<&'a HeaderName>,
}

impl Sides<'_> {
    /// At 0 % the new servers get no request, marked or not.
    fn canary(&self, new_percent: u8) -> Canary {
        Canary {
            deploy: self.deploy.to_owned(),
            old: self.old.iter().map(|id| (*id).to_owned()).collect(),
            new_percent,
            header: self.header.filter(|_| new_percent > 0).cloned(),
        }
    }

    fn new_ids(&self) -> Vec<&str> {
        self.new.iter().map(|(id, _)| *id).collect()
    }
}

/// Sets the new servers' share and waits until the daemon serves it.
pub async fn set_share(sides: &Sides<'_>, new_percent: u8) -> Result<(), String> {
    crate::weights::store(sides.state_dir, sides.service, Some(sides.canary(new_percent)))
        .map_err(|e| format!("cannot set the canary weights: {e}"))?;
    let deadline = Instant::now() + APPLY_TIMEOUT;
    loop {
        if let Ok(report) = status::fetch(sides.status_bind, sides.state_dir).await {
            let service = report.services.iter().find(|s| s.name == sides.service.as_str());
            let weighted = service
                .and_then(|s| s.canary.as_ref())
                .is_some_and(|c| c.deploy == sides.deploy && c.new_percent == new_percent);
            if weighted && header_loaded(&report, sides, new_percent) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the teal at {} did not take up the canary weights in {} within {}: does it run with \
                 --state-dir {}? (see its log)",
                sides.status_bind,
                crate::state_file::path::<crate::weights::CanaryWeights>(sides.state_dir).display(),
                seconds(APPLY_TIMEOUT),
                sides.state_dir.display()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Weights take the runtime API, a header rule a reload: it holds once the
/// config HAProxy last loaded sends the header to every new server.
fn header_loaded(report: &StatusReport, sides: &Sides<'_>, new_percent: u8) -> bool {
    let Some(header) = sides.header.filter(|_| new_percent > 0) else {
        return true;
    };
    let new_names: BTreeSet<&str> = report
        .services
        .iter()
        .filter(|s| s.name == sides.service.as_str())
        .flat_map(|s| &s.servers)
        .filter(|s| sides.new.iter().any(|(id, _)| *id == s.container_id))
        .map(|s| s.name.as_str())
        .collect();
    report
        .last_reload
        .as_ref()
        .and_then(|r| r.sticky_canaries.get(sides.service.as_str()))
        .is_some_and(|sticky| {
            sticky.header == *header && sticky.servers.iter().map(String::as_str).collect::<BTreeSet<_>>() == new_names
        })
}

/// The new servers' share to 0 at once, not waiting for the daemon: a
/// failed step's first move, before the replacements are drained.
fn withdraw(sides: &Sides<'_>) {
    if let Err(error) = crate::weights::store(sides.state_dir, sides.service, Some(sides.canary(0))) {
        println!("  could not set the new containers' share to 0 ({error}); draining them does it");
    }
}

/// Ends the canary in the state dir: every server back to its label
/// weight. A failure is printed: the entry only weighs servers that exist.
pub fn clear(state_dir: &Path, service: &ServiceName) {
    if let Err(error) = crate::weights::store(state_dir, service, None) {
        println!("  could not end the canary weights ({error}); `teal rollout` ends them next time");
    }
}

/// Runs the steps. `Err` carries the steps so far and the reason of the
/// one that failed.
pub async fn run(
    sides: &Sides<'_>,
    settings: &CanarySettings,
    sampler: &Sampler,
    interrupted: &CancellationToken,
) -> Result<CanaryReport, (CanaryReport, String)> {
    let mut report = CanaryReport::default();
    for (i, &percent) in settings.steps.iter().enumerate() {
        if let Err(why) = set_share(sides, percent).await {
            return Err((report, why));
        }
        println!(
            "canary step {}/{}: {percent}% of the traffic to the new containers, held {}",
            i + 1,
            settings.steps.len(),
            seconds(settings.step)
        );
        let step = hold(sides, settings, sampler, percent, interrupted).await;
        let failed = step.reason.clone();
        if failed.is_some() {
            withdraw(sides);
        }
        println!("  {}", step.line());
        report.steps.push(step);
        if let Some(why) = failed {
            return Err((report, format!("canary step {percent}%: {why}")));
        }
    }
    report.promoted = true;
    Ok(report)
}

/// Holds one step until it passes after `--step`, or fails.
async fn hold(
    sides: &Sides<'_>,
    settings: &CanarySettings,
    sampler: &Sampler,
    percent: u8,
    interrupted: &CancellationToken,
) -> StepReport {
    let new_ids = sides.new_ids();
    let started = Instant::now();
    let longest = settings.step * MAX_STEP_STRETCH;
    let at_start = |sampler: &Sampler| {
        let totals = sampler.totals();
        (Traffic::of(&totals, sides.old), Traffic::of(&totals, &new_ids))
    };
    sampler.sample().await;
    let (old_base, new_base) = at_start(sampler);
    let mut said_too_few = false;
    let (mut old, mut new) = (Traffic::default(), Traffic::default());
    let failure = loop {
        let stop = tokio::select! {
            () = interrupted.cancelled() => true,
            () = tokio::time::sleep(POLL) => false,
        };
        let status = sampler.fetch().await;
        if status.is_ok() {
            let (old_now, new_now) = at_start(sampler);
            (old, new) = (old_now.since(&old_base), new_now.since(&new_base));
        }
        if stop {
            break Some("interrupted".to_owned());
        }
        // A daemon restarting for a moment does not end the step.
        let Ok(status) = status else { continue };
        if let Some(down) = not_up(&status, sides) {
            break Some(down);
        }
        let held = started.elapsed();
        match judge(&old, &new, &settings.limits) {
            Judgement::Fail(failure) => break Some(failure.to_string()),
            Judgement::Pass if held >= settings.step => break None,
            Judgement::TooFew(requests) if held >= longest => {
                let min = settings.limits.min_requests;
                break Some(
                    Failure::TooFewRequests {
                        requests,
                        min,
                        waited: held,
                    }
                    .to_string(),
                );
            }
            Judgement::TooFew(requests) if held >= settings.step && !said_too_few => {
                said_too_few = true;
                println!(
                    "  {requests} of --min-requests {} so far: holding the step longer, up to {}",
                    settings.limits.min_requests,
                    seconds(longest)
                );
            }
            Judgement::Pass | Judgement::TooFew(_) => {}
        }
    };
    StepReport {
        percent,
        duration_ms: started.elapsed().as_millis() as u64,
        old,
        new,
        passed: failure.is_none(),
        reason: failure,
    }
}

/// A new server that is no longer UP in HAProxy, as a reason.
fn not_up(status: &StatusReport, sides: &Sides<'_>) -> Option<String> {
    for &(id, name) in sides.new {
        let server = status
            .services
            .iter()
            .flat_map(|s| s.servers.iter())
            .find(|s| s.container_id == id);
        match server {
            Some(server) if server.is_up() => {}
            Some(server) => {
                let haproxy = server.haproxy.map_or_else(|| "-".to_owned(), |h| h.to_string());
                return Some(format!(
                    "{name} is no longer UP (teal: {}, HAProxy: {haproxy})",
                    server.state
                ));
            }
            None => return Some(format!("{name} is no longer routed by teal")),
        }
    }
    None
}
