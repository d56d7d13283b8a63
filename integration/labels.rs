//! Label validation: a bad value leaves that container out (with the reason
//! in the log) and never reaches haproxy.cfg; everything else keeps serving.

use std::time::Duration;

use crate::docker::{Container, Docker};
use crate::teal::Teal;
use crate::util::{unique_prefix, wait_for};

const CONVERGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_label_leaves_only_that_container_out() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).start().await;

    let bad_port = docker
        .container(&prefix, "bad-a")
        .service("web")
        .label("port", "notaport")
        .run()
        .await;
    let bad_host = docker
        .container(&prefix, "bad-b")
        .service("api")
        .label("host", "bad host")
        .run()
        .await;
    let good = docker.container(&prefix, "good").service("web").run().await;

    teal.wait_served_by(&good.body, CONVERGE).await;
    let seen = teal.sample(20).await;
    assert_eq!(seen, vec![good.body.clone(); 20], "only the good container");

    // The reason names the label (the container names do not contain it).
    let line = wait_for(CONVERGE, "teal logs why bad-a is left out", || async {
        log_line_about(&teal, &bad_port, "port")
    })
    .await;
    eprintln!("bad port: {line}");
    let line = wait_for(CONVERGE, "teal logs why bad-b is left out", || async {
        log_line_about(&teal, &bad_host, "host")
    })
    .await;
    eprintln!("bad host: {line}");

    let config = teal.config();
    for value in ["notaport", "bad host"] {
        assert!(!config.contains(value), "{value:?} reached haproxy.cfg:\n{config}");
    }
}

/// The first log line naming this container (by name or short id) and `word`.
fn log_line_about(teal: &Teal, c: &Container, word: &str) -> Option<String> {
    teal.log()
        .lines()
        .filter(|l| l.contains(&c.name) || l.contains(&c.id[..12]))
        .find(|l| l.to_lowercase().contains(word))
        .map(str::to_owned)
}
