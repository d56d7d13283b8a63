//! Docker goes away and comes back: HAProxy keeps serving meanwhile, and
//! teal reconnects, resyncs and follows events again.

use std::time::{Duration, Instant};

use crate::docker::Docker;
use crate::dockerd::PrivateDockerd;
use crate::teal::Teal;
use crate::util::{free_port, unique_prefix};

const CONVERGE: Duration = Duration::from_secs(20);
/// Covers teal's reconnect backoff as well as the event.
const RECONNECT: Duration = Duration::from_secs(40);
const OUTAGE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_docker_restarts() {
    let prefix = unique_prefix();
    let mut dockerd = PrivateDockerd::start(&prefix).await;
    let docker = Docker::at(Some(dockerd.host.clone()));
    let teal = Teal::builder(&prefix).docker_host(&dockerd.host).start().await;

    let old = docker
        .container(&prefix, "old")
        .service("web")
        .host_network(free_port())
        .run()
        .await;
    teal.wait_served_by(&old.body, CONVERGE).await;

    dockerd.stop();
    // Docker is down; HAProxy must not notice.
    let until = Instant::now() + OUTAGE;
    let mut requests = 0;
    while Instant::now() < until {
        assert_eq!(teal.served().await, old.body, "while Docker is down");
        requests += 1;
    }
    dockerd.restart().await;
    let back = Instant::now();

    let new = docker
        .container(&prefix, "new")
        .service("web")
        .host_network(free_port())
        .run()
        .await;
    teal.wait_served_by(&new.body, RECONNECT).await;
    let converged = back.elapsed();
    docker.stop(&old).await;
    teal.wait_only(&[&new.body], CONVERGE).await;
    eprintln!(
        "reconnect: {requests} requests served during a {OUTAGE:?} outage; \
         new container served {} ms after dockerd was back",
        converged.as_millis()
    );
}
