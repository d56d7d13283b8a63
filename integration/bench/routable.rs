//! How long a new container waits to be routed, under a steady keep-alive
//! load (1,000 requests/s, so the new server of two gets a request every
//! 2 ms): from `docker start` returning to the first request it serves (no
//! healthcheck), and from Docker's `health_status: healthy` event (its own
//! timestamp) to the first request it serves. Each start comes after a quiet
//! second, as a deploy's does (the `burst` scenario is the other case).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::EventsOptions;
use futures::StreamExt;

use crate::load::{Connections, Load};
use crate::stack::{wait_until, Containers, Teal};

const RUNS: usize = 20;
const QUIET: Duration = Duration::from_secs(1);

pub async fn run(prefix: &str) {
    let teal = Teal::start(prefix).await;
    let mut containers = Containers::new(prefix);
    containers.run("web", &[], &[]);
    wait_until(Duration::from_secs(20), "the first container is UP", async || {
        teal.servers_up().await == 1
    })
    .await;
    let load = Load::start(teal.http, 1000, 10, Duration::from_secs(600), Connections::KeepAlive);

    let mut started = Vec::new();
    for _ in 0..RUNS {
        let id = containers.create("web", &[], &[]);
        tokio::time::sleep(QUIET).await;
        containers.start(&id);
        let returned = Instant::now();
        if let Some(seen) = first_seen(&load, &id).await {
            // Routed before `docker start` returned: 0.
            started.push(seen.saturating_duration_since(returned));
        }
        containers.stop(&id, 0);
        containers.remove(&id);
    }

    let docker = bollard::Docker::connect_with_defaults().expect("docker client");
    let health = ["--health-cmd", "true", "--health-interval", "1s"];
    let mut healthy = Vec::new();
    for _ in 0..RUNS {
        let id = containers.create("web", &health, &[]);
        tokio::time::sleep(QUIET).await;
        let filters = HashMap::from([
            ("container".to_owned(), vec![id.clone()]),
            ("event".to_owned(), vec!["health_status".to_owned()]),
        ]);
        let mut events = docker.events(Some(EventsOptions {
            filters: Some(filters),
            ..Default::default()
        }));
        containers.start(&id);
        let event_at = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(event)) = events.next().await {
                if event.action.as_deref() == Some("health_status: healthy") {
                    return event.time_nano.map(instant_of);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        if let (Some(event_at), Some(seen)) = (event_at, first_seen(&load, &id).await) {
            healthy.push(seen.saturating_duration_since(event_at));
        }
        containers.stop(&id, 0);
        containers.remove(&id);
    }
    load.stop();

    println!("\nevent to routable, under 1,000 keep-alive requests/s, each after a quiet second:");
    println!(
        "  docker start returned -> first request served (no healthcheck): {}",
        stats(started)
    );
    println!(
        "  health_status: healthy event -> first request served:           {}",
        stats(healthy)
    );
}

/// When the load first got an answer from the container `id`.
async fn first_seen(load: &Load, id: &str) -> Option<Instant> {
    let hostname = &id[..12];
    wait_until(Duration::from_secs(10), "the new container is served", async || {
        load.first_seen(hostname).is_some()
    })
    .await;
    load.first_seen(hostname)
}

/// The `Instant` of a Docker event's wall-clock nanoseconds.
fn instant_of(time_nano: i64) -> Instant {
    let event = UNIX_EPOCH + Duration::from_nanos(time_nano.max(0) as u64);
    let ago = SystemTime::now().duration_since(event).unwrap_or_default();
    Instant::now() - ago
}

fn stats(mut times: Vec<Duration>) -> String {
    if times.is_empty() {
        return "never routed".to_owned();
    }
    times.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms, max {:.1} ms ({} runs: {})",
        ms(&times[times.len() / 2]),
        ms(times.last().expect("not empty")),
        times.len(),
        times
            .iter()
            .map(|t| format!("{:.0}", ms(t)))
            .collect::<Vec<_>>()
            .join(" ")
    )
}
