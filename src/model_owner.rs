//! The model's one owner: applies Docker's reports, publishes snapshots and
//! the connection state, and logs each decision once.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::docker::{self, Report};
use crate::model::{Change, ContainerUpdate, Inventory, Scope, Snapshot};
use crate::settings::Settings;
use crate::status::{DockerStatus, Metrics};

/// Which containers are ours and which networks HAProxy can reach: when
/// teal runs in a container, its own networks and compose project.
pub async fn scope(settings: &Settings) -> anyhow::Result<Scope> {
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

pub struct ModelOwner {
    pub scope: Scope,
    pub snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    pub docker: watch::Sender<DockerStatus>,
    pub metrics: Arc<Metrics>,
}

impl ModelOwner {
    pub async fn run(self, mut reports: mpsc::Receiver<Report>) {
        let mut inventory = Inventory::default();
        let mut current = Arc::new(Snapshot::default());
        let mut listed = false;
        while let Some(report) = reports.recv().await {
            let mut due = self.take(report, &mut inventory, &mut listed);
            // What queued while the last snapshot was built is one snapshot:
            // at 10,000 containers each costs milliseconds.
            while let Ok(report) = reports.try_recv() {
                due |= self.take(report, &mut inventory, &mut listed);
            }
            if !due {
                continue;
            }
            let next = Arc::new(inventory.snapshot(&self.scope));
            log_changes(&current, &next);
            self.metrics.observe_snapshot(&current, &next);
            current = next.clone();
            self.snapshots.send_replace(Some(next));
            // Under a steady churn there is always a next report: without
            // this, building snapshots back to back keeps a worker thread
            // from the stages downstream until tokio's budget runs out.
            tokio::task::yield_now().await;
        }
    }

    /// Applies one report; true when a new snapshot is due (the inventory
    /// changed, or the first listing arrived, even empty).
    fn take(&self, report: Report, inventory: &mut Inventory, listed: &mut bool) -> bool {
        let update = match report {
            Report::Connected => {
                self.metrics.docker_connected.set(1);
                self.docker.send_modify(|status| {
                    status.connected = true;
                    status.error = None;
                });
                return false;
            }
            Report::Disconnected(error) => {
                self.metrics.docker_connected.set(0);
                self.docker.send_modify(|status| {
                    status.connected = false;
                    status.error = Some(error);
                });
                return false;
            }
            Report::Swarm(swarm) => {
                self.metrics
                    .swarm_following
                    .set(swarm.as_ref().is_some_and(|s| s.following).into());
                self.docker.send_modify(|status| status.swarm = swarm);
                return false;
            }
            Report::Update(update) => update,
        };
        let resync = matches!(update, ContainerUpdate::Resync(_));
        if !inventory.apply(update) && (*listed || !resync) {
            return false;
        }
        *listed = true;
        true
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
