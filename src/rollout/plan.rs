//! Which containers a rollout replaces, and what each replacement is: its
//! name (compose's numbering for compose containers), its labels, its
//! image. The configuration itself is copied by [`crate::docker::replica`].

use std::collections::HashMap;

use crate::docker::replica::{self, Plan, Target};
use crate::docker::{Client, Inspected, Which};
use crate::model::labels::{self, ServiceLabels};
use crate::model::{COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL};

const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";

/// An old container being replaced.
pub struct Old {
    pub inspected: Inspected,
    /// Its labels, as teal reads them.
    pub labels: ServiceLabels,
}

impl Old {
    pub fn id(&self) -> &str {
        self.inspected.id()
    }

    pub fn name(&self) -> &str {
        self.inspected.name()
    }

    /// Its compose project and service, when compose made it.
    pub fn compose_service(&self) -> Option<(String, String)> {
        let labels = self.inspected.labels();
        Some((
            labels.get(COMPOSE_PROJECT_LABEL)?.clone(),
            labels.get(COMPOSE_SERVICE_LABEL)?.clone(),
        ))
    }
}

/// The running (or paused) containers of `service`, in `project` when given,
/// sorted by name.
pub async fn old_containers(
    docker: &Client,
    prefix: &str,
    service: &str,
    project: Option<&str>,
) -> anyhow::Result<Vec<Old>> {
    let mut old = Vec::new();
    for listed in docker
        .list(&[format!("{prefix}.service={service}")], Which::Running)
        .await?
    {
        let Some(inspected) = docker.inspect(&listed.id).await? else {
            continue; // gone since the listing
        };
        // As `docker ps --filter status=running,paused`: a restarting one is neither.
        if inspected.state().restarting {
            continue;
        }
        let name = inspected.name().to_owned();
        if project.is_some_and(|p| inspected.labels().get(COMPOSE_PROJECT_LABEL).map(String::as_str) != Some(p)) {
            continue;
        }
        match labels::parse(prefix, &inspected.labels().iter().collect()) {
            Ok(Some(labels)) => old.push(Old { inspected, labels }),
            Ok(None) => println!("skipping {name}: {prefix}.enable=false"),
            Err(error) => anyhow::bail!(
                "{name} has a bad label ({error}): teal leaves it out, and would leave its replacement out too; fix the label first"
            ),
        }
    }
    old.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(old)
}

/// The replacement of each old container, checking first that every
/// image is on this Docker host (a rollout does not pull).
/// `rollout_id`: the deploy's, in the replacements' label (and names).
pub async fn plan_all(
    docker: &Client,
    prefix: &str,
    image: Option<&str>,
    old: &[Old],
    rollout_id: &str,
) -> anyhow::Result<Vec<Plan>> {
    let mut next_number: HashMap<(String, String), u32> = HashMap::new();
    let mut plans = Vec::new();
    for old in old {
        let Some(image) = image.or(old.inspected.image_reference()) else {
            anyhow::bail!("{} has no image reference; pass --image", old.name());
        };
        let found = docker
            .image(image)
            .await
            .map_err(|e| anyhow::Error::from(e).context(format!("cannot inspect image {image}")))?;
        anyhow::ensure!(
            found.is_some(),
            "image {image} is not on this Docker host; pull or build it first (teal rollout does not pull)"
        );
        let old_image = match old.inspected.image_id() {
            Some(id) => docker.image(id).await.ok().flatten(),
            None => None,
        };
        let mut labels = vec![(format!("{prefix}.rollout"), rollout_id.to_owned())];
        let name = match old.compose_service() {
            Some((project, service)) => {
                let key = (project.clone(), service.clone());
                let number = match next_number.get(&key) {
                    Some(n) => *n,
                    None => highest_compose_number(docker, &project, &service).await? + 1,
                };
                next_number.insert(key, number + 1);
                labels.push((COMPOSE_NUMBER.into(), number.to_string()));
                labels.push((COMPOSE_ONEOFF.into(), "False".into()));
                compose_name(old.name(), &project, &service, number)
            }
            None => format!("{}-{rollout_id}", old.name()),
        };
        plans.push(replica::plan(
            &old.inspected,
            old_image.as_ref(),
            Target { image, name, labels },
        ));
    }
    Ok(plans)
}

/// Compose numbers containers 1, 2, ...; the next one is above every
/// number in use, stopped containers included.
async fn highest_compose_number(docker: &Client, project: &str, service: &str) -> anyhow::Result<u32> {
    let labels = [
        format!("{COMPOSE_PROJECT_LABEL}={project}"),
        format!("{COMPOSE_SERVICE_LABEL}={service}"),
    ];
    Ok(docker
        .list(&labels, Which::All)
        .await?
        .iter()
        .filter_map(|c| c.labels.get(COMPOSE_NUMBER)?.parse().ok())
        .max()
        .unwrap_or(0))
}

/// Compose's name for container `number` of a service, in the style of the
/// old container's name (`p_s_1` by compose v1, `p-s-1` by v2).
fn compose_name(old_name: &str, project: &str, service: &str, number: u32) -> String {
    let sep = if old_name.starts_with(&format!("{project}-{service}-")) {
        '-'
    } else {
        '_'
    };
    format!("{project}{sep}{service}{sep}{number}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_names_follow_the_old_style() {
        assert_eq!(compose_name("demo_web_1", "demo", "web", 3), "demo_web_3");
        assert_eq!(compose_name("demo-web-1", "demo", "web", 3), "demo-web-3");
    }
}
