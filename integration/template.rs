//! Custom templates: a template that no longer renders keeps the last good
//! config serving; fixing the file re-renders without a restart.

use std::path::Path;
use std::time::Duration;

use crate::docker::Docker;
use crate::teal::Teal;
use crate::util::{repo_root, unique_prefix, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_template_keeps_last_good_config() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    // The shipped template and its partials, as a user would start.
    let templates = tempfile::tempdir().expect("temp dir");
    copy_dir(&repo_root().join("haproxy"), templates.path());
    let template = templates.path().join("haproxy.cfg.hbs");
    let good = std::fs::read_to_string(&template).expect("haproxy/haproxy.cfg.hbs");
    let teal = Teal::builder(&prefix).template(&template).start().await;

    let a = docker.container(&prefix, "a").service("web").run().await;
    teal.wait_served_by(&a.body, CONVERGE).await;
    let applied = teal.config();

    std::fs::write(&template, "global\n{{#if}}\n  garbage\n").expect("write template");
    wait_until(CONVERGE, "/status shows the template that does not parse", || async {
        let report = teal.report().await;
        report.is_ok_and(|r| r.refused.rendering.is_some_and(|e| e.contains("does not parse")))
    })
    .await;
    assert_eq!(teal.metric("teal_render_failures_total").await, Some(1.0));
    assert_eq!(teal.sample(20).await, vec![a.body.clone(); 20]);
    assert_eq!(teal.config(), applied, "a broken template changed haproxy.cfg");

    // A change while the template is broken must not break serving either.
    let b = docker.container(&prefix, "b").service("web").run().await;
    let seen = teal.sample(20).await;
    assert!(seen.iter().all(|s| *s == a.body || *s == b.body), "{seen:?}");

    // The fix also adds a response header: seeing it proves the new template
    // reached the running HAProxy, not just the file on disk.
    let fixed = with_header(&good, "X-Teal-Template", &prefix);
    std::fs::write(&template, fixed).expect("write template");
    wait_until(CONVERGE, "HAProxy runs the fixed template", || async {
        let response = teal.get().await;
        response.is_ok_and(|r| r.header("X-Teal-Template") == Some(prefix.as_str()))
    })
    .await;
    teal.wait_served_by(&b.body, CONVERGE).await;
    teal.wait_served_by(&a.body, CONVERGE).await;
}

/// `template` with `http-response set-header NAME VALUE` in its HTTP frontend.
fn with_header(template: &str, name: &str, value: &str) -> String {
    let mut out = String::new();
    let mut added = false;
    for line in template.lines() {
        out.push_str(line);
        out.push('\n');
        if !added && line.starts_with("frontend teal_http") {
            out.push_str(&format!("    http-response set-header {name} {value}\n"));
            added = true;
        }
    }
    assert!(added, "no `frontend teal_http` section in the default template");
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read haproxy/") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy template");
        }
    }
}
