//! What a deploy cost, from HAProxy's own per-server counters: `teal
//! rollout` and `teal switch` sample the service's servers through the
//! daemon's `/status` while they run ([`traffic`]), print a report at the
//! end, and keep it in `--state-dir` ([`record`]) for `/status` and
//! `/metrics`.
//!
//! The counters come from `/status` rather than the admin socket in the
//! state dir: the daemon already reads `show stat` for each `/status`, and
//! a command that may run as another user or in another container needs
//! nothing but the status listener it already uses.

pub mod record;
pub mod traffic;

use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

pub use traffic::{Sampler, Traffic};

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new servers serve and the old ones are gone (or off the live slot).
    Completed,
    /// The new servers were taken away; the old ones serve as before.
    RolledBack,
    /// It stopped half way; what serves is in the reason.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Completed, Outcome::RolledBack, Outcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Failed => "failed",
        }
    }
}

/// One deploy's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployReport {
    /// Six hex digits; a rollout's replacements carry it in their names.
    pub id: String,
    pub service: String,
    /// `rollout`, `canary` or `switch`.
    pub kind: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// Why it rolled back or failed.
    pub reason: Option<String>,
    /// What the servers it replaced served during the deploy.
    pub old: Traffic,
    /// What the servers it brought served during the deploy.
    pub new: Traffic,
    /// `teal rollout --canary`: its steps, each judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryReport>,
}

/// A canary's steps, as far as they went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    pub steps: Vec<StepReport>,
    /// Every step passed and the new servers got all the traffic.
    pub promoted: bool,
}

/// One canary step: the new servers' share, and what each side served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub percent: u8,
    pub duration_ms: u64,
    pub old: Traffic,
    pub new: Traffic,
    pub passed: bool,
    /// Why it failed: the measure and its numbers.
    pub reason: Option<String>,
}

impl StepReport {
    pub fn line(&self) -> String {
        let verdict = match &self.reason {
            None if self.passed => "passed".to_owned(),
            None => "failed".to_owned(),
            Some(reason) => format!("failed: {reason}"),
        };
        let error_rate = if self.new.requests > 0 {
            format!(" ({:.1}%)", 100.0 * self.new.errors() as f64 / self.new.requests as f64)
        } else {
            String::new()
        };
        format!(
            "step {}% for {:.1}s: new {} requests, {} errors{error_rate}, {} ms avg; old {} requests, {} ms avg: {verdict}",
            self.percent,
            self.duration_ms as f64 / 1000.0,
            self.new.requests,
            self.new.errors(),
            self.new.response_time_avg_ms,
            self.old.requests,
            self.old.response_time_avg_ms,
        )
    }
}

impl DeployReport {
    /// The lines `teal rollout` and `teal switch` end with.
    pub fn lines(&self) -> Vec<String> {
        let outcome = self.outcome.as_str().replace('_', " ");
        let mut lines = vec![format!(
            "deploy {} ({} {}): {outcome} in {:.1}s{}",
            self.id,
            self.kind,
            self.service,
            self.duration_ms as f64 / 1000.0,
            self.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        )];
        for (side, traffic) in [("old", &self.old), ("new", &self.new)] {
            lines.push(format!("  {side}: {traffic}"));
        }
        if let Some(canary) = &self.canary {
            let verdict = if canary.promoted { "promoted" } else { "rolled back" };
            lines.push(format!(
                "  canary: {verdict} after {} step{}",
                canary.steps.len(),
                if canary.steps.len() == 1 { "" } else { "s" }
            ));
            lines.extend(canary.steps.iter().map(|step| format!("    {}", step.line())));
        }
        lines
    }
}

/// A deploy under way: its id, when it began, and the sampler.
pub struct Deploy {
    pub id: String,
    service: String,
    kind: &'static str,
    started: SystemTime,
    clock: Instant,
    pub sampler: Sampler,
    /// A canary's steps, for the report.
    pub canary: Option<CanaryReport>,
}

impl Deploy {
    /// Starts sampling `service`'s servers at the daemon at `status_addr`
    /// (whose `--status-auth` token is in `state_dir`).
    pub async fn start(
        status_addr: std::net::SocketAddr,
        state_dir: &std::path::Path,
        service: &str,
        kind: &'static str,
    ) -> Self {
        Self {
            id: new_id(),
            service: service.to_owned(),
            kind,
            started: SystemTime::now(),
            clock: Instant::now(),
            sampler: Sampler::start(status_addr, state_dir, service).await,
            canary: None,
        }
    }

    /// Takes a last sample, prints the report and keeps it in `state_dir`
    /// (a failure to keep it is printed, not returned: the deploy is done).
    pub async fn finish(
        self,
        state_dir: &std::path::Path,
        outcome: Outcome,
        reason: Option<String>,
        old: &[&str],
        new: &[&str],
    ) -> DeployReport {
        let totals = self.sampler.stop().await;
        let report = DeployReport {
            id: self.id,
            service: self.service,
            kind: self.kind.to_owned(),
            started: humantime::format_rfc3339_seconds(self.started).to_string(),
            duration_ms: self.clock.elapsed().as_millis() as u64,
            outcome,
            reason,
            old: Traffic::of(&totals, old),
            new: Traffic::of(&totals, new),
            canary: self.canary,
        };
        for line in report.lines() {
            println!("{line}");
        }
        if let Err(error) = record::append(state_dir, &report) {
            println!("  (not kept for /status: {error})");
        }
        report
    }
}

/// Six hex digits that tell deploys (and a rollout's containers) apart.
pub fn new_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:06x}",
        (nanos as u64 ^ u64::from(std::process::id()).rotate_left(24)) & 0xff_ffff
    )
}
