//! Rendering of TLS, redirects, tcp services and per-service settings;
//! every config here also passes `haproxy -c`.

use super::tests::lines_with;
use super::tests_injection::haproxy_check;
use super::*;
use crate::model::tests::{facts, scope};
use crate::model::{ContainerFacts, ContainerUpdate, Inventory};
use crate::settings::Settings;
use crate::tls::tests::make_certificate;

fn with(mut f: ContainerFacts, labels: &[(&str, &str)]) -> ContainerFacts {
    for (k, v) in labels {
        f.labels.insert(format!("teal.{k}"), v);
    }
    f
}

/// HTTP on 127.0.0.1:8080, and TLS with the certificates in `certs`.
fn tls(certs: Option<&str>, https_bind: &str) -> Settings {
    Settings {
        http_bind: "127.0.0.1:8080".parse().unwrap(),
        certs: certs.map(Into::into),
        https_bind: https_bind.parse().unwrap(),
        ..Settings::default()
    }
}

fn no_tls() -> Settings {
    tls(None, ":443")
}

/// Renders `containers` with `settings`, checks the result with
/// `haproxy -c`, returns it.
fn render(settings: Settings, containers: Vec<ContainerFacts>) -> String {
    // The crt-list is written in the state directory.
    let state = tempfile::tempdir().unwrap();
    let settings = Settings {
        state_dir: state.path().into(),
        ..settings
    };
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(containers));
    let snapshot = inventory.snapshot(&scope());
    let settings = ContextSettings::new(&settings).expect("settings");
    let text = Renderer::new(DEFAULT_TEMPLATE)
        .unwrap()
        .render(&Context::new(&settings, &snapshot))
        .unwrap();
    if let Some(Err(error)) = haproxy_check(&text) {
        panic!("haproxy -c refused: {error}");
    }
    text
}

#[test]
fn https_binds_the_certificates_that_load_and_redirects_per_service() {
    let certs = tempfile::tempdir().unwrap();
    make_certificate(certs.path(), "a.example");
    // Refused alone: the good one is served.
    std::fs::write(certs.path().join("broken.example.pem"), "not a certificate").unwrap();
    let dir = certs.path().to_str().unwrap();
    let containers = vec![
        with(
            facts("a", "secure", "10.0.0.2"),
            &[("host", "a.example"), ("https-redirect", "true")],
        ),
        with(facts("bb", "plain", "10.0.0.3"), &[("host", "b.example")]),
        with(facts("ccc", "root", "10.0.0.4"), &[("https-redirect", "true")]),
    ];
    let text = render(tls(Some(dir), "127.0.0.1:8443"), containers.clone());
    let binds = lines_with(&text, "ssl crt-list");
    assert_eq!(binds.len(), 1, "{text}");
    assert!(
        binds[0].starts_with("bind 127.0.0.1:8443 ssl crt-list /"),
        "{}",
        binds[0]
    );
    assert!(
        binds[0].ends_with("/certificates.list alpn h2,http/1.1"),
        "{}",
        binds[0]
    );
    assert_eq!(
        lines_with(&text, "use_backend"),
        [
            "use_backend plain if route0_host",
            "use_backend teal_https_redirect if !{ ssl_fc } route1_host",
            "use_backend secure if route1_host",
            "use_backend teal_https_redirect if !{ ssl_fc }",
        ]
    );
    assert_eq!(lines_with(&text, "default_backend"), ["default_backend root"]);
    assert!(text.contains("location https://%[var(txn.host)]:8443%[pathq] code 301"));
    assert_eq!(lines_with(&text, "sha256:").len(), 1);

    // On 443 the Location names no port.
    let text = render(tls(Some(dir), "127.0.0.1:443"), containers.clone());
    assert!(text.contains("location https://%[var(txn.host)]%[pathq] code 301"));

    // A replaced certificate changes the config, so it gets reloaded.
    make_certificate(certs.path(), "a.example");
    let replaced = render(tls(Some(dir), "127.0.0.1:443"), containers.clone());
    assert_ne!(lines_with(&text, "sha256:"), lines_with(&replaced, "sha256:"));

    // Without --certs there is no HTTPS, so nothing redirects to it.
    let text = render(no_tls(), containers);
    assert!(
        !text.contains("ssl crt") && !text.contains("teal_https_redirect"),
        "{text}"
    );
}

#[test]
fn an_empty_certificate_directory_binds_no_https_yet() {
    let certs = tempfile::tempdir().unwrap();
    let containers = vec![with(facts("a", "web", "10.0.0.2"), &[("https-redirect", "true")])];
    let text = render(tls(certs.path().to_str(), ":443"), containers);
    assert!(!text.contains("ssl crt"), "{text}");
    assert!(lines_with(&text, "use_backend teal_https_redirect").is_empty());
}

#[test]
fn a_tcp_service_gets_its_own_frontend() {
    let text = render(
        no_tls(),
        vec![
            with(
                facts("a", "db", "10.0.0.2"),
                &[("mode", "tcp"), ("listen", "15432"), ("port", "5432")],
            ),
            facts("bb", "web", "10.0.0.3"),
        ],
    );
    let frontend = text.split("frontend teal_tcp_db").nth(1).expect("tcp frontend");
    let frontend: Vec<&str> = frontend.lines().map(str::trim).take(4).collect();
    assert_eq!(
        frontend[1..],
        ["mode tcp", "bind 127.0.0.1:15432", "default_backend db"]
    );
    assert!(text.contains("server app-a-a0000000 10.0.0.2:5432 weight 100"));
    // Not routed by the HTTP frontend.
    assert_eq!(lines_with(&text, "default_backend web"), ["default_backend web"]);
}

#[test]
fn per_service_settings_are_rendered() {
    let text = render(
        no_tls(),
        vec![
            with(
                facts("a", "web", "10.0.0.2"),
                &[
                    ("balance", "leastconn"),
                    ("maxconn", "50"),
                    ("weight", "7"),
                    ("health.path", "/healthz"),
                    ("health.interval", "2s"),
                ],
            ),
            // The newest container sets the service-wide settings.
            with(
                facts("bb", "web", "10.0.0.3"),
                &[
                    ("weight", "0"),
                    ("balance", "leastconn"),
                    ("health.path", "/healthz"),
                    ("health.interval", "2s"),
                ],
            ),
        ],
    );
    assert_eq!(lines_with(&text, "balance leastconn").len(), 1);
    assert_eq!(lines_with(&text, "option httpchk"), ["option httpchk GET /healthz"]);
    assert_eq!(
        lines_with(&text, "server app-"),
        [
            "server app-a-a0000000 10.0.0.2:8080 weight 7 maxconn 50",
            "server app-bb-bb000000 10.0.0.3:8080 weight 0",
        ]
    );
    assert_eq!(
        lines_with(&text, "default-server"),
        [format!(
            "default-server {}",
            crate::render::ServerDefaults {
                check_interval_ms: 2000
            }
        )]
    );
}

#[test]
fn a_service_without_reachable_servers_keeps_its_route_and_answers_503() {
    let text = render(
        no_tls(),
        vec![with(
            facts("a", "api", "10.0.0.2"),
            &[("host", "api.example"), ("network", "elsewhere")],
        )],
    );
    assert_eq!(lines_with(&text, "use_backend"), ["use_backend api if route0_host"]);
    let backend = text.split("backend api").nth(1).unwrap();
    assert!(!backend.contains("server "), "{backend}");
}

/// `--acme-email` with `--preview-https-bind`: HTTPS is bound on both
/// listeners with ACME's crt-list and the fallback, the challenge answers
/// come first, and an ACME route redirects only once its name is served.
#[test]
fn acme_binds_https_with_its_fallback_and_gates_redirects_on_served_names() {
    let settings = Settings {
        acme: Some(crate::settings::AcmeSettings {
            email: "ops@example.com".into(),
            directory: "https://acme.invalid/directory".into(),
            ca_file: None,
        }),
        preview_bind: Some("127.0.0.1:8081".parse().unwrap()),
        preview_https_bind: Some("127.0.0.1:8444".parse().unwrap()),
        ..tls(None, "127.0.0.1:8443")
    };
    let containers = vec![
        with(
            facts("a", "shop", "10.0.0.2"),
            &[("host", "shop.example"), ("tls", "acme"), ("https-redirect", "true")],
        ),
        with(
            facts("bb", "blog", "10.0.0.3"),
            &[("host", "blog.example"), ("https-redirect", "true")],
        ),
    ];
    let text = render(settings, containers);
    let binds = lines_with(&text, " ssl ");
    assert_eq!(binds.len(), 2, "{text}");
    for (bind, addr) in binds.iter().zip(["127.0.0.1:8443", "127.0.0.1:8444"]) {
        assert!(bind.starts_with(&format!("bind {addr} ssl crt-list /")), "{bind}");
        assert!(bind.contains("/acme/certificates.list crt /"), "{bind}");
        assert!(bind.ends_with("/acme/fallback.pem alpn h2,http/1.1"), "{bind}");
    }
    let challenge = lines_with(&text, "acme-challenge");
    assert_eq!(challenge.len(), 1);
    assert!(
        challenge[0].starts_with("http-request return status 200"),
        "{}",
        challenge[0]
    );
    // The blog has no certificate source: not redirected; the shop once served.
    assert_eq!(
        lines_with(&text, "use_backend"),
        [
            "use_backend blog if route0_host",
            "use_backend teal_https_redirect if !{ ssl_fc } teal_acme_served route1_host",
            "use_backend shop if route1_host",
        ]
    );
}
