//! The compiled app server in a test image, for tests that need more than
//! busybox httpd (a response streamed over a second): this test binary,
//! stripped, run in a container as the benchmark's app
//! (integration/bench/app.rs). A libtest binary cannot choose its own
//! `main`, so the image runs only the ignored test [`serve`], and an
//! environment variable tells that test to serve.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::util::{ensure_images, IMAGE};

const REPOSITORY: &str = "teal-test-server";
const SERVE: &str = "TEAL_TEST_SERVE";
/// Images of other builds of the tests older than this are removed.
const KEEP: Duration = Duration::from_secs(3600);

#[test]
#[ignore = "not a test: the app server of the test image, which runs it in its containers"]
fn serve() {
    if std::env::var_os(SERVE).is_some() {
        crate::app::serve();
    }
}

/// The image's tag, built once per test binary: `teal-test-server:<digest>`
/// of the stripped binary, so parallel runs of other builds keep theirs.
pub fn image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        ensure_images();
        let exe = std::env::current_exe().expect("own executable");
        let dir = tempfile::tempdir().expect("temp dir");
        let stripped = dir.path().join("app");
        let strip = Command::new("strip").arg("-o").arg(&stripped).arg(&exe).status();
        if !strip.is_ok_and(|s| s.success()) {
            std::fs::copy(&exe, &stripped).expect("copy the test binary");
        }
        let bytes = std::fs::read(&stripped).expect("read the stripped binary");
        let digest = format!("{:x}", Sha256::digest(&bytes));
        let tag = format!("{REPOSITORY}:{}", &digest[..12]);
        if crate::app::image_id(&tag).is_none() {
            let command = ["/app", "app_image::serve", "--exact", "--ignored", "--test-threads=1"];
            crate::app::build_image(&tag, IMAGE, &stripped, &command, &[&format!("{SERVE}=1")]);
        }
        remove_old_builds(&tag);
        tag
    })
}

/// Other builds' images, once old enough that no test run still uses
/// them; one a container still uses is refused by Docker and stays.
fn remove_old_builds(current: &str) {
    let Ok(out) = Command::new("docker")
        .args(["image", "ls", REPOSITORY, "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
    else {
        return;
    };
    for tag in String::from_utf8_lossy(&out.stdout).lines().filter(|t| *t != current) {
        if created(tag).is_some_and(|at| at.elapsed().unwrap_or_default() > KEEP) {
            let _ = Command::new("docker").args(["image", "rm", tag]).output();
        }
    }
}

fn created(tag: &str) -> Option<SystemTime> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Created}}", tag])
        .output()
        .ok()?;
    humantime::parse_rfc3339_weak(String::from_utf8_lossy(&out.stdout).trim().get(..19)?).ok()
}

/// Whether a `/stream` body arrived whole: its length is the one
/// announced and it ends with the marker.
pub fn whole(response: &crate::http::Response) -> bool {
    let announced = response.header("content-length").and_then(|l| l.parse::<usize>().ok());
    announced == Some(response.body.len()) && response.body.ends_with(crate::app::STREAM_END)
}
