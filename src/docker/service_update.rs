//! Swarm services as `teal rollout` changes them: find the service that
//! carries teal's labels, start a start-first update (a new image, or the
//! same one forced, as `docker service update --force`), read how Swarm's
//! update goes, and ask Swarm to roll back (`docker service rollback`).
//!
//! The spec goes back as the daemon wrote it (raw JSON, through
//! [`super::swarm_api`]), with only the image (or `ForceUpdate`) and the
//! update order changed, so everything else a user set (replicas,
//! healthcheck, networks, update delay...) stays. bollard's typed spec
//! would not do: it reads the daemon's `Healthcheck` as `HealthCheck`, and
//! an update through it dropped the service's healthcheck.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::swarm_api::{self, filters_query, ApiError};

/// The Docker API of one daemon, for its Swarm services.
pub struct ServiceApi {
    host: String,
    version: String,
}

/// One Swarm service as the daemon described it (`GET /services/{id}`).
#[derive(Debug, Clone)]
pub struct SwarmService(Value);

/// Where Swarm's update of a service is, from its `UpdateStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateProgress {
    pub state: UpdateState,
    /// When this update began (as the daemon writes it): tells one update
    /// from the one before it, whose state the service shows until Swarm
    /// starts the next.
    pub started_at: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateState {
    Updating,
    Completed,
    /// A new task failed and the update's failure action is `pause`.
    Paused,
    /// Swarm rolls back (`failure_action: rollback`, or asked to)...
    RollingBack,
    /// ...and has.
    RolledBack,
    /// Its rollback failed too: Swarm stopped half way.
    RollbackPaused,
}

impl SwarmService {
    pub fn id(&self) -> &str {
        self.0["ID"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.0["Spec"]["Name"].as_str().unwrap_or_default()
    }

    /// The image its tasks run, without a pinned digest.
    pub fn image(&self) -> &str {
        let image = self.0["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            .as_str()
            .unwrap_or_default();
        image.split('@').next().unwrap_or(image)
    }

    /// The replica count of a replicated service; `None` for a global one.
    pub fn replicas(&self) -> Option<u64> {
        let replicated = self.0["Spec"]["Mode"].get("Replicated")?;
        Some(replicated["Replicas"].as_u64().unwrap_or(1))
    }

    pub fn update(&self) -> Option<UpdateProgress> {
        let status = self.0.get("UpdateStatus")?;
        let state = match status["State"].as_str()? {
            "completed" => UpdateState::Completed,
            "paused" => UpdateState::Paused,
            "rollback_started" => UpdateState::RollingBack,
            "rollback_completed" => UpdateState::RolledBack,
            "rollback_paused" => UpdateState::RollbackPaused,
            _ => UpdateState::Updating,
        };
        let text = |key: &str| status[key].as_str().map(str::to_owned);
        Some(UpdateProgress {
            state,
            started_at: text("StartedAt"),
            message: text("Message"),
        })
    }

    fn version(&self) -> u64 {
        self.0["Version"]["Index"].as_u64().unwrap_or_default()
    }

    /// The spec of the update: `image` (else the same image, forced), new
    /// tasks started before old ones are stopped.
    fn updated_spec(&self, image: Option<&str>) -> Value {
        let mut spec = self.0["Spec"].clone();
        let template = &mut spec["TaskTemplate"];
        match image {
            Some(image) => template["ContainerSpec"]["Image"] = image.into(),
            None => template["ForceUpdate"] = (template["ForceUpdate"].as_u64().unwrap_or(0) + 1).into(),
        }
        spec["UpdateConfig"]["Order"] = "start-first".into();
        spec
    }
}

/// The answer to a service update.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Updated {
    #[serde(default)]
    warnings: Option<Vec<String>>,
}

impl ServiceApi {
    /// The daemon at `host` (as [`super::connect`] picks it) speaking API `version`.
    pub fn new(host: Option<&str>, version: String) -> Self {
        Self {
            host: super::swarm::resolve_host(host),
            version,
        }
    }

    /// The Swarm services that carry every label of `labels` (`key=value`).
    pub async fn services(&self, labels: &[String]) -> Result<Vec<SwarmService>, ApiError> {
        let filters = HashMap::from([("label", labels.to_vec())]);
        let path = format!("/services{}", filters_query(&filters));
        let services: Vec<Value> = swarm_api::get(&self.host, &self.version, &path).await?;
        Ok(services.into_iter().map(SwarmService).collect())
    }

    pub async fn service(&self, id: &str) -> Result<SwarmService, ApiError> {
        let path = format!("/services/{id}");
        Ok(SwarmService(swarm_api::get(&self.host, &self.version, &path).await?))
    }

    /// Starts a start-first update of `service` to `image` (else a forced
    /// update of the same image); returns the daemon's warnings.
    pub async fn update(&self, service: &SwarmService, image: Option<&str>) -> Result<Vec<String>, ApiError> {
        let path = format!("/services/{}/update?version={}", service.id(), service.version());
        let spec = service.updated_spec(image);
        let answer: Updated = swarm_api::post(&self.host, &self.version, &path, &spec).await?;
        Ok(answer.warnings.unwrap_or_default())
    }

    /// `docker service rollback`: Swarm goes back to the spec before the last update.
    pub async fn roll_back(&self, service: &SwarmService) -> Result<(), ApiError> {
        let path = format!(
            "/services/{}/update?version={}&rollback=previous",
            service.id(),
            service.version()
        );
        let _: Updated = swarm_api::post(&self.host, &self.version, &path, &service.0["Spec"]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Trimmed from a Docker 20.10 manager's GET /services/{id}.
    const SERVICE: &str = r#"{"ID": "p221nybelc9i", "Version": {"Index": 42},
        "Spec": {"Name": "shop_website", "Labels": {"teal.service": "website"},
            "TaskTemplate": {"ContainerSpec": {"Image": "app:1@sha256:abcd", "Env": ["A=1"],
                "Healthcheck": {"Test": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"],
                    "Interval": 1000000000}},
                "ForceUpdate": 2},
            "Mode": {"Replicated": {"Replicas": 2}},
            "UpdateConfig": {"Parallelism": 1, "Delay": 2000000000, "FailureAction": "rollback", "Order": "stop-first"}},
        "UpdateStatus": {"State": "rollback_completed", "StartedAt": "2026-12-02T06:00:00.1Z", "Message": "rollback completed"}}"#;

    fn service() -> SwarmService {
        SwarmService(serde_json::from_str(SERVICE).expect("service JSON"))
    }

    #[test]
    fn reads_what_a_rollout_needs() {
        let service = service();
        assert_eq!(
            (
                service.id(),
                service.name(),
                service.image(),
                service.replicas(),
                service.version()
            ),
            ("p221nybelc9i", "shop_website", "app:1", Some(2), 42)
        );
        assert_eq!(
            service.update(),
            Some(UpdateProgress {
                state: UpdateState::RolledBack,
                started_at: Some("2026-12-02T06:00:00.1Z".into()),
                message: Some("rollback completed".into()),
            })
        );
    }

    #[test]
    fn an_update_changes_the_image_or_forces_and_starts_first_keeping_the_rest() {
        let service = service();
        let mut expected = service.0["Spec"].clone();
        expected["TaskTemplate"]["ContainerSpec"]["Image"] = "app:2".into();
        expected["UpdateConfig"]["Order"] = "start-first".into();
        assert_eq!(service.updated_spec(Some("app:2")), expected);

        let mut expected = service.0["Spec"].clone();
        expected["TaskTemplate"]["ForceUpdate"] = 3.into();
        expected["UpdateConfig"]["Order"] = "start-first".into();
        assert_eq!(service.updated_spec(None), expected);
    }
}
