//! Label validation: a bad value leaves that container out (with the reason
//! in `/status`) and never reaches haproxy.cfg; everything else keeps serving.

use std::time::Duration;

use crate::docker::Docker;
use crate::teal::Teal;
use crate::util::unique_prefix;

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
    let reason = teal.wait_excluded(&bad_port, &format!("{prefix}.port"), CONVERGE).await;
    eprintln!("bad port: {reason}");
    let reason = teal.wait_excluded(&bad_host, &format!("{prefix}.host"), CONVERGE).await;
    eprintln!("bad host: {reason}");

    let config = teal.config();
    for value in ["notaport", "bad host"] {
        assert!(!config.contains(value), "{value:?} reached haproxy.cfg:\n{config}");
    }
}
