use super::*;
use crate::model::tests::{facts, scope};
use crate::model::{ContainerUpdate, Inventory, Maintenance, Pause};

fn web() -> ServiceName {
    ServiceName::parse("web").unwrap()
}

fn maintenance(message: &str) -> Maintenance {
    Maintenance {
        message: message.into(),
        since: 1_700_000_000,
    }
}

#[test]
fn changes_round_trip_and_a_service_with_nothing_set_leaves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(ServiceControls::load(dir.path()).unwrap(), ServiceControls::default());
    let until = unix_now() + 60;
    store(dir.path(), &web(), |c| c.maintenance = Some(maintenance("back soon"))).unwrap();
    let both = store(dir.path(), &web(), |c| c.pause = Some(Pause { until })).unwrap();
    assert_eq!(both.pause, Some(Pause { until }));
    assert_eq!(ServiceControls::load(dir.path()).unwrap().of(&web()), both);
    // Resuming leaves maintenance on.
    let left = store(dir.path(), &web(), |c| c.pause = None).unwrap();
    assert_eq!(left.maintenance.map(|m| m.message), Some("back soon".to_owned()));
    store(dir.path(), &web(), |c| c.maintenance = None).unwrap();
    let text = std::fs::read_to_string(state_file::path::<ServiceControls>(dir.path())).unwrap();
    assert_eq!(text.trim(), "{}");
}

#[test]
fn bad_files_are_refused_with_what_to_do() {
    for bad in ["[]", r#"{"we b": {}}"#, r#"{"web": {"pause": {"until": "soon"}}}"#] {
        assert!(ServiceControls::parse(bad).is_err(), "{bad}");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(state_file::path::<ServiceControls>(dir.path()), "{").unwrap();
    let error = ServiceControls::load(dir.path()).unwrap_err().to_string();
    assert!(error.contains("fix or delete it"), "{error}");
}

#[test]
fn only_http_services_get_them_and_an_ended_pause_is_gone() {
    let mut inventory = Inventory::default();
    let mut db = facts("b", "db", "10.0.0.3");
    db.labels.insert("teal.mode", "tcp");
    db.labels.insert("teal.listen", "5432");
    inventory.apply(ContainerUpdate::Resync(vec![facts("a", "web", "10.0.0.2"), db]));
    let snapshot = inventory.snapshot(&scope());
    let set = Controls {
        maintenance: Some(maintenance("back soon")),
        pause: Some(Pause { until: 1_000 }),
    };
    let controls = ServiceControls(BTreeMap::from([
        (web(), set.clone()),
        (ServiceName::parse("db").unwrap(), set),
    ]));
    assert!(controls.changes(&snapshot));
    assert!(
        !ServiceControls::default().changes(&snapshot),
        "nothing set: passed on as it is"
    );
    let before_end = controls.route_at(snapshot.clone(), 999);
    let served = |s: &Snapshot, name: &str| {
        s.services
            .iter()
            .find(|x| x.name.as_str() == name)
            .unwrap()
            .controls
            .clone()
    };
    let web_set = served(&before_end, "web");
    assert_eq!(web_set.pause, Some(Pause { until: 1_000 }));
    assert_eq!(web_set.maintenance.map(|m| m.message), Some("back soon".to_owned()));
    assert_eq!(served(&before_end, "db"), Controls::default());

    let after_end = controls.route_at(snapshot, 1_000);
    assert_eq!(served(&after_end, "web").pause, None);
    assert!(served(&after_end, "web").maintenance.is_some());
    assert_eq!(controls.current(1_000).of(&web()).pause, None);
    assert_eq!(controls.current(999).of(&web()).pause, Some(Pause { until: 1_000 }));
}

#[test]
fn the_daemon_writes_the_pages_and_routes_again_when_a_pause_ends() {
    let dir = tempfile::tempdir().unwrap();
    let until = unix_now() + 60;
    store(dir.path(), &web(), |c| c.maintenance = Some(maintenance("back <soon>"))).unwrap();
    store(dir.path(), &web(), |c| c.pause = Some(Pause { until })).unwrap();
    let controls = ServiceControls::load(dir.path()).unwrap();
    controls.taken_up(dir.path());
    let page = std::fs::read_to_string(pages_dir(dir.path()).join("web.html")).unwrap();
    assert!(page.contains("back &lt;soon&gt;"), "{page}");
    let wait = controls.changes_in().expect("the pause ends");
    assert!(
        (Duration::from_secs(58)..=Duration::from_secs(60)).contains(&wait),
        "{wait:?}"
    );
}

#[test]
fn the_page_shows_the_message_escaped() {
    let page = page("Back at 5 <script>alert(1)</script> & more");
    assert!(
        page.contains("<p>Back at 5 &lt;script&gt;alert(1)&lt;/script&gt; &amp; more</p>"),
        "{page}"
    );
    assert!(page.len() < MAX_MESSAGE_LEN, "the page itself is small");
}
