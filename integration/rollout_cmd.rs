//! `teal rollout SERVICE` against the real daemon, each under load with a
//! new connection per request: a rollout that follows a moved tag, a
//! rollback to a tag with `--image`, replacements that never come up
//! (unhealthy, exiting, never UP in HAProxy) rolled back with the old
//! containers serving throughout, and a second rollout refused while one
//! runs. Not one request may fail in any of them.
//!
//! Also the small kit `switch` reuses: `Deploy` (images and containers of
//! one test, removed on drop whoever created them) and `teal_cli`.

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use crate::docker::Docker;
use crate::http::{Load, LoadStats};
use crate::teal::Teal;
use crate::util::{unique_prefix, wait_for, wait_until, IMAGE};

const CONVERGE: Duration = Duration::from_secs(20);
const CLIENTS: usize = 6;

/// A `teal` command pointed at `teal`'s label prefix, state dir and status
/// endpoint, with nothing from the caller's TEAL_* environment.
pub fn teal_cli(teal: &Teal, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_teal"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TEAL_") {
            cmd.env_remove(key);
        }
    }
    // As environment, since each subcommand takes only the flags it reads.
    cmd.args(args)
        .env("TEAL_LABEL_PREFIX", &teal.prefix)
        .env("TEAL_STATE_DIR", &teal.state_dir)
        .env("TEAL_STATUS_BIND", teal.status.to_string())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs it to the end; returns whether it succeeded and all it printed.
pub async fn run_cli(teal: &Teal, args: &[&str]) -> (bool, String) {
    let out = teal_cli(teal, args).output().await.expect("run teal");
    let text = transcript(&out);
    eprintln!("$ teal {}\n{text}", args.join(" "));
    (out.status.success(), text)
}

fn transcript(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The images and containers of one test. Containers are found by the
/// test's own label prefix, so the replacements `teal rollout` creates are
/// removed too; images are this test's tags only.
pub struct Deploy {
    pub docker: Docker,
    pub prefix: String,
    images: Vec<String>,
}

impl Deploy {
    pub fn new(prefix: &str) -> Deploy {
        Deploy {
            docker: Docker::shared(),
            prefix: prefix.to_owned(),
            images: Vec::new(),
        }
    }

    pub fn image(&self, version: &str) -> String {
        format!("{}-app:{version}", self.prefix)
    }

    /// Tags `from` as this test's `version` (a tag can also be moved).
    pub async fn tag(&mut self, from: &str, version: &str) -> String {
        let tag = self.image(version);
        self.docker.run(&["tag", from, &tag]).await;
        self.images.push(tag.clone());
        tag
    }

    /// Tags `from` as `tag` (a name of the caller's choice), removed on drop.
    pub async fn tag_named(&mut self, from: &str, tag: &str) -> String {
        self.docker.run(&["tag", from, tag]).await;
        self.images.push(tag.to_owned());
        tag.to_owned()
    }

    /// Builds `version` from the test image plus Dockerfile `lines`. The
    /// label makes the image this test's own: two tests building the same
    /// lines would otherwise share one cached image, and one test's `rmi`
    /// could delete it under the other's tag.
    pub async fn build(&mut self, version: &str, lines: &[&str]) -> String {
        self.build_from(IMAGE, version, lines).await
    }

    /// [`Deploy::build`] from the image `base`.
    pub async fn build_from(&mut self, base: &str, version: &str, lines: &[&str]) -> String {
        let tag = self.image(version);
        let dockerfile = format!(
            "FROM {base}\nLABEL teal-test.owner={}\n{}\n",
            self.prefix,
            lines.join("\n")
        );
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", &tag, "-"])
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker build");
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(dockerfile.as_bytes()).await.expect("write Dockerfile");
        drop(stdin);
        let out = child.wait_with_output().await.expect("docker build");
        assert!(out.status.success(), "docker build {tag}: {}", transcript(&out));
        self.images.push(tag.clone());
        tag
    }

    /// `docker run -d --init` of service `web` named `<prefix>-<short>`. Its
    /// body is its hostname (the short id): replacements answer differently.
    pub async fn run(&self, short: &str, image: &str, args: &[&str]) -> String {
        let name = format!("{}-{short}", self.prefix);
        let service = format!("{}.service=web", self.prefix);
        let mut all = vec!["run", "-d", "--init", "--name", &name, "--label", &service];
        all.extend_from_slice(args);
        all.push(image);
        self.docker.run(&all).await
    }

    /// Full ids of the running containers of service `web`, sorted.
    pub async fn running(&self) -> Vec<String> {
        self.ids(&["--filter", &format!("label={}.service=web", self.prefix)])
            .await
    }

    /// Every container (any state) a rollout of this test created.
    pub async fn replacements_ever(&self) -> Vec<String> {
        self.ids(&["-a", "--filter", &format!("label={}.rollout", self.prefix)])
            .await
    }

    async fn ids(&self, filter: &[&str]) -> Vec<String> {
        let mut args = vec!["ps", "-q", "--no-trunc"];
        args.extend_from_slice(filter);
        let mut ids: Vec<String> = self.docker.run(&args).await.lines().map(str::to_owned).collect();
        ids.sort();
        ids
    }

    pub async fn inspect(&self, id: &str, format: &str) -> String {
        self.docker.run(&["inspect", "-f", format, id]).await
    }
}

impl Drop for Deploy {
    fn drop(&mut self) {
        let docker = |args: &[&str]| std::process::Command::new("docker").args(args).output();
        let label = format!("label={}.service", self.prefix);
        if let Ok(out) = docker(&["ps", "-aq", "--no-trunc", "--filter", &label]) {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids.iter().map(String::as_str));
                let _ = docker(&args);
            }
        }
        for image in &self.images {
            let _ = docker(&["rmi", image]);
        }
    }
}

pub fn short(id: &str) -> &str {
    &id[..12]
}

/// Waits until the load has made `more` requests beyond now: load
/// duration measured in requests, not time.
pub async fn more_requests(load: &Load, more: u64) {
    let target = load.requests() + more;
    wait_until(CONVERGE, "the load made its requests", || async {
        load.requests() >= target
    })
    .await;
}

/// Runs `teal ARGS`, which must succeed, under `load`; keeps the load on
/// for `more` requests, and checks that none failed. What the command
/// printed, and what the load saw.
pub async fn run_under_load(teal: &Teal, load: Load, args: &[&str], more: u64) -> (String, LoadStats) {
    let (ok, output) = run_cli(teal, args).await;
    assert!(ok, "teal {} failed:\n{output}", args.join(" "));
    more_requests(&load, more).await;
    let stats = load.stop().await;
    eprintln!("{}", summary(&format!("teal {}", args.join(" ")), &stats));
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    (output, stats)
}

/// The requests the deploy report says the `side` (old, new) servers served.
pub fn served_by(output: &str, side: &str) -> u64 {
    let line = output
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{side}: ")))
        .unwrap_or_else(|| panic!("no {side}: line in the deploy report:\n{output}"));
    let requests = line.split(", ").nth(1).and_then(|f| f.strip_suffix(" requests"));
    requests
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in {line:?}"))
}

pub fn summary(what: &str, stats: &LoadStats) -> String {
    let mut served: Vec<String> = stats.seen.iter().map(|(b, s)| format!("{b}={}", s.count)).collect();
    served.sort();
    format!(
        "{what}: {} requests, {} failed, served: {}",
        stats.requests,
        stats.failures,
        served.join(" ")
    )
}

async fn start_load(teal: &Teal, bodies: &[&str]) -> Load {
    for body in bodies {
        teal.wait_served_by(body, CONVERGE).await;
    }
    let load = Load::start(teal.http, CLIENTS);
    more_requests(&load, 100).await;
    load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_follows_the_tag_under_load() {
    let prefix = unique_prefix();
    let mut deploy = Deploy::new(&prefix);
    let stable = deploy.tag(IMAGE, "stable").await;
    let v2 = deploy.build("v2", &["ENV VERSION=2"]).await;
    let v2_id = deploy.inspect(&v2, "{{.Id}}").await;
    let teal = Teal::builder(&prefix).start().await;
    let old = [
        deploy.run("a", &stable, &["-e", "GREETING=hi"]).await,
        deploy.run("b", &stable, &["-e", "GREETING=hi"]).await,
    ];
    let load = start_load(&teal, &[short(&old[0]), short(&old[1])]).await;

    // What a `docker pull` of a new release does: the tag moves.
    deploy.tag(&v2, "stable").await;
    let (output, stats) = run_under_load(&teal, load, &["rollout", "web", "--drain", "2s"], 200).await;
    let (old_served, new_served) = (served_by(&output, "old"), served_by(&output, "new"));
    assert!(output.contains("(rollout web): completed in"), "{output}");
    assert!(old_served > 0 && new_served > 0, "{output}");
    assert!(
        old_served + new_served <= stats.requests,
        "more served than sent:\n{output}"
    );
    assert!(output.contains(" 0 5xx,"), "{output}");
    let report = teal.report().await.expect("GET /status");
    let last = &report.deploys[0];
    assert_eq!(last.outcome, teal::deploy::Outcome::Completed, "{last:?}");
    assert_eq!(last.new.requests, new_served, "{last:?}");
    let completed = teal.metric("teal_deploys_total{outcome=\"completed\"}").await;
    assert_eq!(completed, Some(1.0));

    let new = deploy.running().await;
    assert_eq!(new.len(), 2, "{new:?}");
    for id in &new {
        assert!(!old.contains(id), "an old container still runs");
        assert_eq!(
            deploy.inspect(id, "{{.Image}}").await,
            v2_id,
            "not on the image the tag points to now"
        );
        let env = deploy.inspect(id, "{{json .Config.Env}}").await;
        assert!(env.contains("VERSION=2") && env.contains("GREETING=hi"), "{env}");
        assert_eq!(deploy.inspect(id, "{{.HostConfig.Init}}").await, "true");
        assert!(stats.seen.contains_key(short(id)), "{} never served", short(id));
    }
    // Plain containers keep their names: the replacements took them.
    let names: Vec<String> = futures::future::join_all(new.iter().map(|id| deploy.inspect(id, "{{.Name}}"))).await;
    let mut names: Vec<&str> = names.iter().map(|n| n.trim_start_matches('/')).collect();
    names.sort();
    assert_eq!(names, [format!("{prefix}-a"), format!("{prefix}-b")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_to_a_tag_with_image_under_load() {
    let prefix = unique_prefix();
    let mut deploy = Deploy::new(&prefix);
    let v1 = deploy.tag(IMAGE, "v1").await;
    let v1_id = deploy.inspect(&v1, "{{.Id}}").await;
    let v2 = deploy.build("v2", &["ENV VERSION=2"]).await;
    let teal = Teal::builder(&prefix).start().await;
    let old = deploy.run("a", &v2, &[]).await;
    let load = start_load(&teal, &[short(&old)]).await;

    run_under_load(&teal, load, &["rollout", "web", "--image", &v1, "--drain", "2s"], 200).await;

    let new = deploy.running().await;
    assert_eq!(new.len(), 1);
    assert_eq!(deploy.inspect(&new[0], "{{.Config.Image}}").await, v1);
    assert_eq!(deploy.inspect(&new[0], "{{.Image}}").await, v1_id);
    // v2's env came from its image, so it does not follow onto v1.
    let env = deploy.inspect(&new[0], "{{json .Config.Env}}").await;
    assert!(!env.contains("VERSION=2"), "{env}");
    teal.wait_only(&[short(&new[0])], CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_rollouts_roll_back_while_the_old_containers_serve() {
    let prefix = unique_prefix();
    let mut deploy = Deploy::new(&prefix);
    let v1 = deploy.tag(IMAGE, "v1").await;
    let unhealthy = deploy
        .build(
            "unhealthy",
            &["HEALTHCHECK --interval=500ms --timeout=1s --retries=2 CMD false"],
        )
        .await;
    let crashing = deploy
        .build("crashing", &[r#"CMD ["/bin/sh", "-c", "echo boom; exit 3"]"#])
        .await;
    // Runs, but nothing listens: HAProxy's check never passes, although
    // HAProxy calls a server it just added UP until that first check.
    let silent = deploy.build("silent", &[r#"CMD ["sleep", "3600"]"#]).await;
    let teal = Teal::builder(&prefix).start().await;
    // One container: no sibling's failure can make up for a missed one.
    let old = deploy.run("a", &v1, &[]).await;
    let load = start_load(&teal, &[short(&old)]).await;

    for (image, timeout, why) in [
        (&unhealthy, "60s", "turned unhealthy in Docker"),
        (&crashing, "60s", "exited (exit code 3); its last output:"),
        (&silent, "4s", "not UP in HAProxy within 4.0s"),
    ] {
        let (ok, output) = run_cli(
            &teal,
            &[
                "rollout",
                "web",
                "--image",
                image,
                "--timeout",
                timeout,
                "--drain",
                "2s",
            ],
        )
        .await;
        assert!(!ok, "a rollout to {image} succeeded:\n{output}");
        assert!(output.contains(why), "{image}: expected {why:?} in:\n{output}");
        assert!(output.contains("failed and was rolled back"), "{output}");
        assert_eq!(
            deploy.running().await,
            std::slice::from_ref(&old),
            "the old container is the one running"
        );
        assert_eq!(
            deploy.replacements_ever().await,
            Vec::<String>::new(),
            "a replacement was left"
        );
        more_requests(&load, 50).await;
    }
    let stats = load.stop().await;
    eprintln!("{}", summary("failed rollouts", &stats));
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    assert_eq!(
        stats.seen.len(),
        1,
        "only the old container answered: {:?}",
        stats.seen.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_rollout_of_the_service_is_refused_while_one_runs() {
    let prefix = unique_prefix();
    let mut deploy = Deploy::new(&prefix);
    let v1 = deploy.tag(IMAGE, "v1").await;
    // Healthy only once the test says so: the first rollout waits on it.
    let gated = deploy
        .build(
            "gated",
            &["HEALTHCHECK --interval=500ms --timeout=1s --start-period=120s CMD test -f /tmp/ok"],
        )
        .await;
    let teal = Teal::builder(&prefix).start().await;
    let old = deploy.run("a", &v1, &[]).await;
    let load = start_load(&teal, &[short(&old)]).await;

    let first = teal_cli(&teal, &["rollout", "web", "--image", &gated, "--drain", "2s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the first rollout");
    let first_pid = first.id().expect("pid");
    let replacement = wait_for(CONVERGE, "the first rollout starts its replacement", || async {
        deploy.replacements_ever().await.into_iter().next()
    })
    .await;

    let (ok, output) = run_cli(&teal, &["rollout", "web", "--image", &v1]).await;
    assert!(!ok, "the second rollout ran:\n{output}");
    assert!(
        output.contains(&format!("another rollout of web is running (pid {first_pid}")),
        "{output}"
    );

    // Listed as soon as it is created (when even an inspect may not find
    // it yet); it starts a moment later.
    let running = ["ps", "-q", "--no-trunc", "--filter", "status=running", "--filter"];
    let this_one = format!("id={replacement}");
    wait_until(CONVERGE, "the replacement runs", || async {
        let mut args = running.to_vec();
        args.push(&this_one);
        !deploy.docker.run(&args).await.is_empty()
    })
    .await;
    deploy.docker.run(&["exec", &replacement, "touch", "/tmp/ok"]).await;
    let out = tokio::time::timeout(Duration::from_secs(60), first.wait_with_output())
        .await
        .expect("the first rollout ends")
        .expect("wait");
    let first_output = transcript(&out);
    eprintln!("first rollout:\n{first_output}");
    assert!(out.status.success(), "the first rollout failed:\n{first_output}");
    more_requests(&load, 100).await;
    let stats = load.stop().await;
    eprintln!("{}", summary("concurrent rollouts", &stats));
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    assert_eq!(deploy.running().await, [replacement]);
}
