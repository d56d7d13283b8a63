use std::sync::Arc;

use super::*;
use crate::model::tests::{facts, scope};
use crate::model::{ContainerUpdate, Inventory};
use crate::render::{ContextSettings, Renderer, DEFAULT_TEMPLATE};

pub(crate) fn context_settings() -> ContextSettings {
    ContextSettings {
        http_bind: ":80".parse().unwrap(),
        preview_bind: None,
        preview_https_bind: None,
        haproxy_metrics_bind: None,
        admin_socket: "/var/lib/teal/haproxy.sock".into(),
        server_state_file: "/var/lib/teal/server-state".into(),
        label_prefix: "teal".into(),
        tls: None,
        hold: crate::render::HoldSettings::new(
            "/var/lib/teal/hold.lua".as_ref(),
            "/var/lib/teal/hold".as_ref(),
            std::time::Duration::from_secs(15),
        ),
        maintenance_pages: "/var/lib/teal/maintenance".into(),
    }
}

pub(crate) fn rendering(template: &str) -> Rendering {
    Rendering::new(Renderer::new(template).unwrap(), context_settings())
}

/// Snapshots of service `web` (and others) built from `(id, service)` pairs.
pub(crate) fn snapshot(containers: &[(&str, &str)]) -> Snapshot {
    let mut inventory = Inventory::default();
    for (i, (id, service)) in containers.iter().enumerate() {
        inventory.apply(ContainerUpdate::Upsert(facts(
            id,
            service,
            &format!("10.0.0.{}", i + 2),
        )));
    }
    inventory.snapshot(&scope())
}

fn applied(snapshot: Snapshot, rendering: &Rendering) -> Applied {
    Applied {
        text: rendering.render(&snapshot).unwrap(),
        snapshot: Arc::new(snapshot),
        inputs: rendering.id(),
    }
}

#[test]
fn nothing_applied_yet_is_a_reload() {
    let next = snapshot(&[("a", "web")]);
    assert_eq!(decide(None, &next, "text", false), Decision::Reload("text".into()));
}

#[test]
fn the_same_text_is_unchanged_even_after_an_edit() {
    let rendering = rendering(DEFAULT_TEMPLATE);
    let last = applied(snapshot(&[("a", "web")]), &rendering);
    let text = last.text.clone();
    assert_eq!(
        decide(Some(&last), &last.snapshot.clone(), &text, true),
        Decision::Unchanged
    );
}

#[test]
fn server_changes_are_runtime_commands_unless_the_rendering_changed() {
    let rendering = rendering(DEFAULT_TEMPLATE);
    let last = applied(snapshot(&[("a", "web")]), &rendering);
    let next = snapshot(&[("a", "web"), ("bb", "web")]);
    let text = rendering.render(&next).unwrap();
    let Decision::Runtime(commands) = decide(Some(&last), &next, &text, false) else {
        panic!("expected runtime commands");
    };
    assert_eq!(commands, plan(&last.snapshot, &next).unwrap());
    assert_eq!(decide(Some(&last), &next, &text, true), Decision::Reload(text));
}

#[test]
fn a_new_service_is_a_reload() {
    let rendering = rendering(DEFAULT_TEMPLATE);
    let last = applied(snapshot(&[("a", "web")]), &rendering);
    let next = snapshot(&[("a", "web"), ("bb", "api")]);
    let text = rendering.render(&next).unwrap();
    assert_eq!(decide(Some(&last), &next, &text, false), Decision::Reload(text));
}

#[test]
fn an_edit_that_renders_the_applied_snapshot_alike_is_adopted() {
    let before = rendering(DEFAULT_TEMPLATE);
    let mut state = Reconciled::default();
    state.set_applied(applied(snapshot(&[("a", "web")]), &before), false);
    // A Handlebars comment changes the template but not its output.
    let alike = rendering(&format!("{{{{!-- note --}}}}{DEFAULT_TEMPLATE}"));
    assert_ne!(alike.id(), before.id());
    assert!(!state.rendering_changed(&alike));
    assert_eq!(state.applied().unwrap().inputs, alike.id());
    let different = rendering(&format!("# note\n{DEFAULT_TEMPLATE}"));
    assert!(state.rendering_changed(&different));
}

#[test]
fn only_taking_servers_out_is_urgent() {
    let rendering = rendering(DEFAULT_TEMPLATE);
    let mut state = Reconciled::default();
    assert!(!state.urgent(&snapshot(&[("a", "web")])));
    state.set_applied(applied(snapshot(&[("a", "web"), ("bb", "web")]), &rendering), false);
    assert!(state.urgent(&snapshot(&[("a", "web")])));
    assert!(!state.urgent(&snapshot(&[("a", "web"), ("bb", "web"), ("ccc", "web")])));
}
