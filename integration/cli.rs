//! The command line of the real binary: what can never work stops it at
//! once (exit 2) with a message that says what to do, before anything
//! starts; what works but is exposed is warned about. No Docker needed.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::free_addr;

/// `teal ARGS` with nothing from the caller's TEAL_* or DOCKER_HOST
/// environment, run to the end.
fn teal(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_teal"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TEAL_") || key == "DOCKER_HOST" {
            cmd.env_remove(key);
        }
    }
    cmd.args(args).envs(env.iter().copied()).env("NO_COLOR", "1");
    cmd.output().expect("run teal")
}

/// Exits with `code` and says `said` on stderr.
fn assert_fails(out: &Output, code: i32, said: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(said), "expected {said:?} in:\n{stderr}");
}

/// The flags that keep `teal run` off the machine's own paths.
fn run_args<'a>(dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let dir = dir.to_str().expect("utf-8 temp dir");
    let mut args = vec![
        "run",
        "--state-dir",
        dir,
        "--reload",
        "none",
        "--http-bind",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    args
}

const INSTALL_HAPROXY: &str = "install haproxy (apt-get install haproxy) or pass --haproxy PATH";

#[test]
fn a_missing_haproxy_stops_run_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haproxy.cfg");
    let config = config.to_str().unwrap();
    let out = teal(
        &run_args(dir.path(), &["--config", config, "--haproxy", "/nonexistent/haproxy"]),
        &[],
    );
    assert_fails(&out, 2, "--haproxy /nonexistent/haproxy: no such executable file");
    assert_fails(&out, 2, INSTALL_HAPROXY);

    let out = teal(&["check", "--haproxy", "teal-no-such-haproxy"], &[]);
    assert_fails(&out, 2, "--haproxy teal-no-such-haproxy: not found in PATH");
    assert_fails(&out, 2, INSTALL_HAPROXY);

    // The environment twin is checked the same way.
    let out = teal(&["check"], &[("TEAL_HAPROXY", "/nonexistent/haproxy")]);
    assert_fails(&out, 2, INSTALL_HAPROXY);
}

#[test]
fn a_config_path_that_is_a_directory_stops_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let out = teal(&run_args(dir.path(), &["--config", path]), &[]);
    assert_fails(&out, 2, &format!("--config {path}: is a directory"));
    assert_fails(&out, 2, &format!("--config {path}/haproxy.cfg"));
}

#[test]
fn a_docker_host_teal_cannot_dial_stops_every_command_that_dials() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haproxy.cfg");
    let config = config.to_str().unwrap();
    let run = run_args(
        dir.path(),
        &["--config", config, "--docker-host", "ftp://127.0.0.1:2375"],
    );
    let out = teal(&run, &[]);
    assert_fails(
        &out,
        2,
        "--docker-host \"ftp://127.0.0.1:2375\": teal cannot connect there",
    );
    assert_fails(&out, 2, "unix:///var/run/docker.sock");

    let out = teal(&["render"], &[("DOCKER_HOST", "https://127.0.0.1:2376")]);
    assert_fails(
        &out,
        2,
        "DOCKER_HOST \"https://127.0.0.1:2376\": teal cannot connect there",
    );
    let out = teal(&["rollout", "web"], &[("TEAL_DOCKER_HOST", "ssh://me@127.0.0.1")]);
    assert_fails(&out, 2, "teal cannot connect there");
}

#[test]
fn a_subcommand_refuses_the_flags_of_others() {
    let out = teal(&["switch", "web", "--http-bind", "127.0.0.1:8080"], &[]);
    assert_fails(&out, 2, "unexpected argument '--http-bind'");
    let out = teal(&["status", "--label-prefix", "t1"], &[]);
    assert_fails(&out, 2, "unexpected argument '--label-prefix'");
    // An environment twin a subcommand does not read is ignored: one
    // environment serves every subcommand.
    let status = free_addr().to_string();
    let out = teal(&["status", "--status-bind", &status], &[("TEAL_HTTP_BIND", ":81")]);
    assert_fails(&out, 1, &status);
}

#[test]
fn run_warns_about_plain_tcp_docker_and_a_public_status_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haproxy.cfg");
    let config = config.to_str().unwrap();
    // 192.0.2.1 (TEST-NET-1) is no address of this host: after the
    // warnings, binding the status endpoint fails and teal exits.
    let args = run_args(
        dir.path(),
        &[
            "--config",
            config,
            "--docker-host",
            "tcp://127.0.0.1:1",
            "--status-bind",
            "192.0.2.1:9180",
        ],
    );
    let out = teal(&args, &[]);
    assert_fails(&out, 1, "cannot listen on --status-bind 192.0.2.1:9180");
    assert_fails(
        &out,
        1,
        "the Docker API over plain TCP is unencrypted and unauthenticated",
    );
    let exposed = "listens beyond loopback without --status-auth";
    assert_fails(&out, 1, exposed);

    // With credentials it is not exposed; a file teal cannot use stops it.
    let auth = dir.path().join("status.htpasswd");
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    std::fs::write(&auth, format!("viewer:{hash}\n")).unwrap();
    let auth = auth.to_str().unwrap();
    let args = run_args(
        dir.path(),
        &[
            "--config",
            config,
            "--status-bind",
            "192.0.2.1:9180",
            "--status-auth",
            auth,
        ],
    );
    let out = teal(&args, &[]);
    assert_fails(&out, 1, "cannot listen on --status-bind 192.0.2.1:9180");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(exposed));
    std::fs::write(dir.path().join("status.htpasswd"), "viewer:$apr1$abc$def\n").unwrap();
    let out = teal(&args, &[]);
    assert_fails(&out, 2, "line 1: the hash of \"viewer\" is not bcrypt");
}
