//! Rendering in parts gives the whole template's text, render after render.

use super::*;
use crate::model::tests::{facts, scope};
use crate::model::{ContainerFacts, ContainerUpdate, Health, Inventory};
use crate::settings::Settings;

fn settings(state_dir: &str) -> ContextSettings {
    let settings = Settings {
        http_bind: "127.0.0.1:8080".parse().unwrap(),
        preview_bind: Some("127.0.0.1:8081".parse().unwrap()),
        state_dir: state_dir.into(),
        ..Settings::default()
    };
    ContextSettings::new(&settings).expect("settings")
}

fn labelled(mut f: ContainerFacts, labels: &[(&str, &str)]) -> ContainerFacts {
    for (k, v) in labels {
        f.labels.insert(format!("teal.{k}"), v);
    }
    f
}

/// Renders each inventory state both ways with one renderer (so later
/// renders reuse what earlier ones kept) and compares.
fn assert_same(template: &str, settings: &ContextSettings, states: &[Vec<ContainerFacts>]) {
    let renderer = Renderer::new(template).unwrap();
    for containers in states {
        let mut inventory = Inventory::default();
        inventory.apply(ContainerUpdate::Resync(containers.clone()));
        let snapshot = inventory.snapshot(&scope());
        let whole = renderer.render(&Context::new(settings, &snapshot)).unwrap();
        assert_eq!(renderer.render_snapshot(settings, &snapshot).unwrap(), whole);
    }
}

fn fleet() -> Vec<ContainerFacts> {
    vec![
        labelled(facts("a1", "web", "10.0.0.2"), &[("host", "web.example.com")]),
        labelled(facts("a2", "web", "10.0.0.3"), &[("host", "web.example.com")]),
        labelled(facts("b1", "api", "10.0.0.4"), &[("path", "/api"), ("hold", "0")]),
        labelled(facts("c1", "db", "10.0.0.5"), &[("mode", "tcp"), ("listen", "5432")]),
        labelled(facts("d1", "site", "10.0.0.6"), &[("slot", "green")]),
        facts("e1", "fallback", "10.0.0.7"),
    ]
}

#[test]
fn the_default_template_renders_in_parts_alike_across_changes() {
    let renderer = Renderer::new(DEFAULT_TEMPLATE).unwrap();
    assert!(renderer.split.is_some(), "the default template is rendered in parts");
    let all = fleet();
    let mut one_more = all.clone();
    one_more.push(labelled(facts("a3", "web", "10.0.0.8"), &[("host", "web.example.com")]));
    let mut starting = one_more.clone();
    starting[6].health = Health::Starting;
    let mut service_gone = all.clone();
    service_gone.retain(|f| !f.name.ends_with("b1"));
    let settings = settings("/run/t");
    assert_same(
        DEFAULT_TEMPLATE,
        &settings,
        &[
            all.clone(),
            one_more,
            starting,
            all.clone(),
            service_gone,
            all.clone(),
            Vec::new(),
            all.clone(),
        ],
    );
}

#[test]
fn a_settings_change_renders_every_service_again() {
    let renderer = Renderer::new(DEFAULT_TEMPLATE).unwrap();
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(fleet()));
    let snapshot = inventory.snapshot(&scope());
    for state_dir in ["/run/a", "/run/b", "/run/a"] {
        let settings = settings(state_dir);
        let whole = renderer.render(&Context::new(&settings, &snapshot)).unwrap();
        assert_eq!(renderer.render_snapshot(&settings, &snapshot).unwrap(), whole);
    }
}

#[test]
fn a_block_reading_its_position_renders_alike() {
    let template = "{{#each services}}{{@index}} {{name}}{{#if @first}} first{{/if}}{{#if @last}} last{{/if}} {{@root.settings.label_prefix}} {{../settings.http_bind}}\n{{/each}}end\n";
    let mut fewer = fleet();
    fewer.remove(2);
    assert_same(template, &settings("/run/t"), &[fleet(), fewer, fleet()]);
}

#[test]
fn templates_that_read_services_elsewhere_render_whole() {
    for template in [
        "{{#each services}}{{name}}\n{{/each}}{{#if services}}some{{/if}}",
        "{{services.0.name}}{{#each services}}{{name}}\n{{/each}}",
        "{{#each services}}{{@root.services.0.name}}\n{{/each}}",
        "{{#each services}}{{name}}\n{{/each}}{{#each services}}{{name}}\n{{/each}}",
        "{{#*inline \"p\"}}{{name}}{{/inline}}{{#each services}}{{> p}}\n{{/each}}",
        "{{#each services as |s|}}{{s.name}}\n{{/each}}",
        "{{#each services}}{{name}}\n{{else}}none{{/each}}",
        "{{#with this}}{{#each services}}{{name}}\n{{/each}}{{/with}}",
    ] {
        let renderer = Renderer::new(template).unwrap();
        assert!(renderer.split.is_none(), "{template} must render whole");
        assert_same(template, &settings("/run/t"), &[fleet()]);
    }
}

#[test]
fn an_error_in_a_service_is_the_whole_templates_error() {
    let template = "{{#each services}}{{name}} {{no_such_field}}\n{{/each}}";
    let renderer = Renderer::new(template).unwrap();
    assert!(renderer.split.is_some());
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(fleet()));
    let snapshot = inventory.snapshot(&scope());
    let settings = settings("/run/t");
    let whole = renderer.render(&Context::new(&settings, &snapshot)).unwrap_err();
    let in_parts = renderer.render_snapshot(&settings, &snapshot).unwrap_err();
    assert_eq!(in_parts.to_string(), whole.to_string());
}

#[test]
fn a_change_to_the_frame_alone_renders_it_again() {
    // The frame's text is kept while its context is unchanged; a container
    // left out, or a route moved, changes the frame but no service's text.
    let template = "{{#each excluded}}{{container_name}}: {{reason}}\n{{/each}}{{#each http_routes}}{{service}} {{hosts}}\n{{/each}}{{#each services}}{{name}}\n{{/each}}end\n";
    let left_out = labelled(facts("x1", "web", "10.0.0.9"), &[("port", "not-a-port")]);
    let mut with_left_out = fleet();
    with_left_out.push(left_out.clone());
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(with_left_out.clone()));
    assert!(!inventory.snapshot(&scope()).excluded.is_empty(), "x1 is left out");
    let mut moved = fleet();
    moved[0] = labelled(facts("a1", "web", "10.0.0.2"), &[("host", "www.example.com")]);
    moved[1] = labelled(facts("a2", "web", "10.0.0.3"), &[("host", "www.example.com")]);
    let settings = settings("/run/t");
    assert_same(
        template,
        &settings,
        &[fleet(), with_left_out.clone(), fleet(), moved, fleet()],
    );
    assert_same(DEFAULT_TEMPLATE, &settings, &[fleet(), with_left_out, fleet()]);
}
