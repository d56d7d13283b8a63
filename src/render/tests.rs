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
        f.labels.insert(format!("teal.{k}"), v);
    }
    f
}

/// The trimmed lines holding `needle`, outside the services' hold
/// frontends (`frontend teal_hold_*`, which repeat each backend's name).
pub(super) fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    let mut in_hold = false;
    text.lines()
        .filter(|line| {
            if line.starts_with("frontend ") || line.starts_with("backend ") {
                in_hold = line.starts_with("frontend teal_hold_");
            }
            !in_hold
        })
        .map(str::trim)
        .filter(|l| l.contains(needle))
        .collect()
}

/// The hold frontend of `service`, as rendered.
fn hold_frontend<'a>(text: &'a str, service: &str) -> &'a str {
    let start = text
        .find(&format!("frontend teal_hold_{service}\n"))
        .unwrap_or_else(|| panic!("no hold frontend for {service}:\n{text}"));
    text[start..].split("\n\n").next().unwrap()
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
    // --hold (15 s by default), teal.hold, and none for teal.hold=0 and tcp:
    // a backup server on the service's own socket, where its hold frontend
    // waits for a usable server.
    let holds = lines_with(&text, "server teal_hold unix@");
    assert_eq!(holds.len(), 2, "{holds:?}");
    assert!(holds
        .iter()
        .all(|l| l.starts_with("server teal_hold unix@/run/t/hold/") && l.ends_with(".sock backup no-check")));
    for (service, ms) in [("slow", 30000), ("web", 15000)] {
        let frontend = hold_frontend(&text, service);
        assert!(
            frontend.contains(&format!("http-request lua.teal_hold {service} {ms} 1000 0\n")),
            "{frontend}"
        );
        assert!(
            frontend.contains("hdr Retry-After 5 unless { var(txn.teal_ready) -m bool }"),
            "{frontend}"
        );
        assert!(frontend.contains(&format!("default_backend {service}")), "{frontend}");
    }
    assert!(!text.contains("frontend teal_hold_fast") && !text.contains("frontend teal_hold_db"));
    // Handed over by a stopping worker: to the hold again, in the new one.
    assert_eq!(lines_with(&text, "use-server teal_hold").len(), 2);
    // HAProxy's own 503 carries Retry-After; no rule second-guesses nbsrv.
    let answers = lines_with(&text, "http-error status 503");
    assert_eq!(answers.len(), 3, "every http backend: {answers:?}");
    assert!(answers.iter().all(|l| l.ends_with("hdr Retry-After 5")), "{answers:?}");
    assert!(lines_with(&text, "http-request return status 503").is_empty(), "{text}");
    assert!(!text.contains("nbsrv"), "{text}");
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
    assert!(hold_frontend(&text, "web").contains("http-request lua.teal_hold web 2500 1000 0\n"));
}

#[test]
fn hold_sockets_fit_a_unix_socket_path_whatever_the_service_name() {
    let settings = ContextSettings::new(&Settings::default()).expect("settings");
    let long = crate::model::labels::ServiceName::parse(&"a".repeat(64)).unwrap();
    let short = crate::model::labels::ServiceName::parse("web").unwrap();
    let (a, b) = (settings.hold.socket(&long), settings.hold.socket(&short));
    assert_ne!(a, b);
    assert_eq!(a.len(), b.len());
    assert!(a.starts_with(&settings.hold.sockets) && a.ends_with(".sock"), "{a}");
}

#[test]
fn maintenance_answers_the_page_and_a_pause_holds_every_request_until_it_ends() {
    use crate::model::{Maintenance, Pause};
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(vec![
        facts("a", "web", "10.0.0.2"),
        with(facts("b", "api", "10.0.0.3"), &[("hold", "0"), ("host", "api.example")]),
    ]));
    let mut snapshot = inventory.snapshot(&scope());
    std::sync::Arc::make_mut(&mut snapshot.services[0]).controls.pause = Some(Pause { until: 1_800_000_000 });
    std::sync::Arc::make_mut(&mut snapshot.services[1]).controls.maintenance = Some(Maintenance {
        message: "back soon".into(),
        since: 1_700_000_000,
    });
    let text = render_snapshot(&snapshot);
    let backend = |name: &str| {
        text.split(&format!("\nbackend {name}\n"))
            .nth(1)
            .unwrap()
            .split("\n\n")
            .next()
            .unwrap()
            .to_owned()
    };
    // api is paused: every request goes to its hold, which its teal.hold=0
    // alone would not have rendered, until the pause's end.
    let api = backend("api");
    assert!(api.contains("use-server teal_hold if { date lt 1800000000 }"), "{api}");
    assert!(
        api.contains("http-request set-timeout server 360000ms if { date lt 1800000000 }"),
        "{api}"
    );
    assert!(hold_frontend(&text, "api").contains("http-request lua.teal_hold api 0 1000 1800000000000\n"));
    let web = backend("web");
    assert!(
        web.contains(
            "http-request return status 503 content-type \"text/html; charset=utf-8\" file /run/t/maintenance/web.html hdr Retry-After 60"
        ),
        "{web}"
    );
    assert!(!web.contains("date lt"), "{web}");
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
    std::sync::Arc::make_mut(&mut snapshot.services[0])
        .hosts
        .push(crate::model::labels::HostName::parse("one-more.example").unwrap());
    if let Some(result) = super::tests_injection::haproxy_check(&render_snapshot(&snapshot)) {
        assert!(result.is_err(), "HAProxy took a line of 65 words");
    }
}

/// `--canary-header`: marked requests go to a new server whatever the
/// weights; a pause still holds them first. The rule is there only while
/// the new servers have a share, and HAProxy loads it.
#[test]
fn a_canary_header_sends_marked_requests_to_the_new_servers() {
    use crate::model::{Canary, HeaderName, Pause};
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(vec![
        facts("a", "web", "10.0.0.2"),
        facts("b", "web", "10.0.0.3"),
        facts("c", "web", "10.0.0.4"),
    ]));
    let mut snapshot = inventory.snapshot(&scope());
    let old = snapshot.services[0].servers[0].container_id.0.clone();
    let canary = Canary {
        deploy: "abcdef".into(),
        old: vec![old],
        new_percent: 10,
        header: Some(HeaderName::parse("X-Canary").unwrap()),
    };
    std::sync::Arc::make_mut(&mut snapshot.services[0]).canary = Some(canary.clone());
    std::sync::Arc::make_mut(&mut snapshot.services[0]).controls.pause = Some(Pause { until: 1_800_000_000 });
    let text = render_snapshot(&snapshot);
    let names: Vec<String> = snapshot.services[0].servers[1..]
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(
        lines_with(&text, "teal_canary"),
        [
            "http-request set-var(txn.teal_canary) rand(2) if { req.hdr(X-Canary) -m found }".to_owned(),
            format!("use-server {} if {{ var(txn.teal_canary) -m int 0 }}", names[0]),
            format!("use-server {} if {{ var(txn.teal_canary) -m int 1 }}", names[1]),
        ]
    );
    let paused = text.find("use-server teal_hold if { date lt").unwrap();
    assert!(
        paused < text.find(&format!("use-server {}", names[0])).unwrap(),
        "{text}"
    );
    if let Some(result) = super::tests_injection::haproxy_check(&text) {
        result.unwrap();
    }
    // At 0 % the new servers get nothing, marked or not.
    std::sync::Arc::make_mut(&mut snapshot.services[0]).canary = Some(Canary {
        new_percent: 0,
        ..canary
    });
    assert!(lines_with(&render_snapshot(&snapshot), "teal_canary").is_empty());
}
