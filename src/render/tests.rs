use super::*;
use crate::model::tests::{facts, scope};
use crate::model::{ContainerFacts, ContainerUpdate, Health, Inventory, Snapshot};
use crate::settings::Settings;

fn render(containers: Vec<ContainerFacts>) -> String {
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(containers));
    render_snapshot(&inventory.snapshot(&scope()))
}

fn render_snapshot(snapshot: &Snapshot) -> String {
    let settings = Settings {
        http_bind: "127.0.0.1:8080".parse().unwrap(),
        state_dir: "/run/t".into(),
        ..Settings::default()
    };
    let settings = ContextSettings::new(&settings).expect("settings");
    Renderer::new(DEFAULT_TEMPLATE)
        .unwrap()
        .render(&Context::new(&settings, snapshot))
        .unwrap()
}

fn with(mut f: ContainerFacts, labels: &[(&str, &str)]) -> ContainerFacts {
    for (k, v) in labels {
        f.labels.insert(format!("teal.{k}"), v.to_string());
    }
    f
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().map(str::trim).filter(|l| l.contains(needle)).collect()
}

#[test]
fn a_catch_all_service_is_the_default_backend() {
    let text = render(vec![facts("a", "web", "10.0.0.2")]);
    assert_eq!(lines_with(&text, "default_backend"), ["default_backend web"]);
    assert_eq!(
        lines_with(&text, "server app-a"),
        ["server app-a-a0000000 10.0.0.2:8080 weight 100"]
    );
    assert_eq!(
        lines_with(&text, "default-server"),
        [format!(
            "default-server {}",
            crate::render::ServerDefaults { check_interval_ms: 500 }
        )]
    );
    assert!(text.contains("bind 127.0.0.1:8080"));
    assert!(text.contains("stats socket /run/t/haproxy.sock"));
}

#[test]
fn a_service_without_a_ready_server_holds_requests_then_answers_503() {
    let text = render(vec![
        facts("a", "web", "10.0.0.2"),
        with(
            facts("b", "fast", "10.0.0.3"),
            &[("hold", "0"), ("host", "fast.example")],
        ),
        with(
            facts("c", "slow", "10.0.0.4"),
            &[("hold", "30s"), ("host", "slow.example")],
        ),
        with(facts("d", "db", "10.0.0.5"), &[("mode", "tcp"), ("listen", "5432")]),
    ]);
    assert!(text.contains("lua-load /run/t/hold.lua"), "{text}");
    // --hold (15 s by default), teal.hold, and none for teal.hold=0 and tcp.
    assert_eq!(
        lines_with(&text, "lua.teal_hold"),
        [
            "http-request lua.teal_hold 30000 1000 if { nbsrv eq 0 }",
            "http-request lua.teal_hold 15000 1000 if { nbsrv eq 0 }",
        ]
    );
    // HAProxy's own 503 carries Retry-After; no rule second-guesses nbsrv.
    let answers = lines_with(&text, "http-error status 503");
    assert_eq!(answers.len(), 3, "every http backend: {answers:?}");
    assert!(answers.iter().all(|l| l.ends_with("hdr Retry-After 5")), "{answers:?}");
    assert!(lines_with(&text, "http-request return status 503").is_empty(), "{text}");
}

#[test]
fn the_hold_flag_sets_the_default_bound() {
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(vec![facts("a", "web", "10.0.0.2")]));
    let settings = Settings {
        hold: std::time::Duration::from_millis(2500),
        ..Settings::default()
    };
    let settings = ContextSettings::new(&settings).expect("settings");
    let text = Renderer::new(DEFAULT_TEMPLATE)
        .unwrap()
        .render(&Context::new(&settings, &inventory.snapshot(&scope())))
        .unwrap();
    assert_eq!(
        lines_with(&text, "lua.teal_hold"),
        ["http-request lua.teal_hold 2500 1000 if { nbsrv eq 0 }"]
    );
}

#[test]
fn no_service_means_404_for_everything() {
    let text = render_snapshot(&Snapshot::default());
    assert_eq!(lines_with(&text, "default_backend"), ["default_backend teal_not_found"]);
}

#[test]
fn most_specific_route_first() {
    let text = render(vec![
        with(facts("a", "site", "10.0.0.2"), &[("host", "example.com")]),
        with(
            facts("bb", "api", "10.0.0.3"),
            &[("host", "example.com"), ("path", "/api")],
        ),
        with(facts("ccc", "docs", "10.0.0.4"), &[("path", "/docs")]),
    ]);
    assert_eq!(
        lines_with(&text, "use_backend"),
        [
            "use_backend api if route0_host route0_path",
            "use_backend site if route1_host",
            "use_backend docs if route2_path",
        ]
    );
    assert!(text.contains("acl route0_path path_beg /api/"));
}

#[test]
fn server_states_render_as_haproxy_understands_them() {
    let mut starting = facts("a", "web", "10.0.0.2");
    starting.health = Health::Starting;
    let mut inventory = Inventory::default();
    let stopping = facts("bb", "web", "10.0.0.3");
    inventory.apply(ContainerUpdate::Resync(vec![starting, stopping.clone()]));
    inventory.apply(ContainerUpdate::Drain(stopping.id));
    let text = render_snapshot(&inventory.snapshot(&scope()));
    let servers = lines_with(&text, "server app-");
    assert!(servers[0].ends_with(" disabled"), "maint: {}", servers[0]);
    assert!(servers[1].ends_with(" weight 0"), "drain: {}", servers[1]);
}

#[test]
fn tcp_services_get_their_own_frontend() {
    let text = render(vec![with(
        facts("a", "db", "10.0.0.2"),
        &[("mode", "tcp"), ("listen", "15432")],
    )]);
    assert!(text.contains("frontend teal_tcp_db"), "{text}");
    assert!(text.contains("bind 127.0.0.1:15432"));
    assert_eq!(lines_with(&text, "default_backend teal_not_found").len(), 1);
}

#[test]
fn a_broken_template_is_an_error_not_a_config() {
    assert!(matches!(Renderer::new("{{#if}}"), Err(RenderError::Parse(_))));
    let strict = Renderer::new("{{settings.no_such_field}}").unwrap();
    assert!(matches!(
        strict.render(&Context::new(&test_settings(), &Snapshot::default())),
        Err(RenderError::Render(_))
    ));
}

fn test_settings() -> ContextSettings {
    ContextSettings::new(&Settings::default()).expect("settings")
}

/// The longest, largest values the labels allow render into a config
/// HAProxy loads: the model's limits are HAProxy's.
#[test]
fn the_largest_values_labels_allow_pass_haproxy() {
    let label = |c: char, n: usize| std::iter::repeat_n(c, n).collect::<String>();
    let long_host = |i: usize| {
        format!(
            "h{i:02}{}.{}.{}.{}",
            label('a', 60),
            label('b', 63),
            label('c', 63),
            label('d', 61)
        )
    };
    assert_eq!(long_host(0).len(), 253);
    let hosts: Vec<String> = (0..crate::model::labels::MAX_HOSTS).map(long_host).collect();
    let path = format!("/{}", label('p', 1023));
    let service = label('s', 64);
    let mut http = with(
        facts("a", &service, "10.0.0.2"),
        &[
            ("host", &hosts.join(",")),
            ("path", &path),
            ("health.path", &path),
            ("health.interval", "1h"),
            ("weight", "256"),
            ("maxconn", "1000000"),
            ("https-redirect", "true"),
        ],
    );
    http.name = label('n', 300);
    let tcp = with(
        facts("b", &label('t', 64), "10.0.0.3"),
        &[("mode", "tcp"), ("listen", "65535"), ("port", "65535")],
    );
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(vec![http, tcp]));
    let snapshot = inventory.snapshot(&scope());
    assert!(snapshot.excluded.is_empty(), "{:?}", snapshot.excluded);
    let text = render_snapshot(&snapshot);
    assert!(text.lines().any(|l| l.split_whitespace().count() == 64), "{text}");
    if let Some(result) = super::tests_injection::haproxy_check(&text) {
        result.unwrap();
    }
    // One name more than the label allows, and HAProxy refuses the line.
    let names: Vec<String> = (0..crate::model::labels::MAX_HOSTS)
        .map(|i| format!("h{i}.example"))
        .collect();
    let mut inventory = Inventory::default();
    let web = with(facts("a", "web", "10.0.0.2"), &[("host", &names.join(","))]);
    inventory.apply(ContainerUpdate::Resync(vec![web]));
    let mut snapshot = inventory.snapshot(&scope());
    snapshot.services[0]
        .hosts
        .push(crate::model::labels::HostName::parse("one-more.example").unwrap());
    if let Some(result) = super::tests_injection::haproxy_check(&render_snapshot(&snapshot)) {
        assert!(result.is_err(), "HAProxy took a line of 65 words");
    }
}
