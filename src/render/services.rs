//! The services part of a template, rendered once per service and reused
//! while that service is unchanged.
//!
//! Nearly all of haproxy.cfg at scale is the `{{#each services}}` block
//! (10,000 server lines), and a container's start or stop changes one
//! service of hundreds. A template whose top level has one such block, and
//! that reads `services` nowhere else, renders in two parts: the frame (the
//! template with the block cut out) from everything but `services`, and the
//! block once for each service. A service's text is kept while the service,
//! its position (`@index`, `@first`, `@last`) and the frame's context
//! (settings, routes, excluded containers: all `@root` the block can read)
//! stay the same; the frame's text is kept while its context does. Any
//! other template renders whole, as before; so does a
//! render that fails here, so its error is the whole template's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use handlebars::template::{Parameter, Template, TemplateElement};
use handlebars::{BlockContext, Handlebars, Path, PathSeg, RenderContext, Renderable, StringOutput};
use serde_json::Value;

use crate::model::labels::ServiceName;
use crate::model::{Service, Snapshot};

use super::context::{Context, ContextService, ContextSettings};

/// Stands for the services in the frame's text: no value teal renders can
/// contain it (labels and settings are validated).
const MARKER: &str = "\u{1}teal-services\u{1}";

/// A template cut around its `{{#each services}}` block.
pub(super) struct Split {
    /// The template with the block replaced by [`MARKER`].
    pub frame: Template,
    block: Template,
}

impl Split {
    /// `None` when the template cannot be rendered in parts without
    /// changing its text.
    pub fn of(template: &Template) -> Option<Self> {
        let mut blocks = template
            .elements
            .iter()
            .enumerate()
            .filter_map(|(i, element)| each_services(element).map(|block| (i, block)));
        let (index, block) = blocks.next()?;
        if blocks.next().is_some() || !cacheable(&block.elements) {
            return None;
        }
        let block = block.clone();
        let mut frame = template.clone();
        frame.elements[index] = TemplateElement::RawString(MARKER.to_owned());
        if reads_services(&frame.elements) {
            return None;
        }
        Some(Self { frame, block })
    }
}

/// The body of `{{#each services}}...{{/each}}` (no `else`, no block
/// parameters).
fn each_services(element: &TemplateElement) -> Option<&Template> {
    let TemplateElement::HelperBlock(helper) = element else {
        return None;
    };
    let is_each = matches!(&helper.name, Parameter::Name(name) if name == "each");
    let over_services = matches!(
        helper.params.as_slice(),
        [Parameter::Path(Path::Relative((segments, _)))] if matches!(segments.as_slice(), [PathSeg::Named(name)] if name == "services")
    );
    if !is_each || !over_services || helper.inverse.is_some() || helper.block_param.is_some() {
        return None;
    }
    helper.template.as_ref()
}

/// The block renders alone: it reads no `services` and calls no partial
/// (an inline partial of the template is not defined outside it).
fn cacheable(elements: &[TemplateElement]) -> bool {
    !reads_services(elements) && !elements.iter().any(has_partial)
}

fn has_partial(element: &TemplateElement) -> bool {
    match element {
        TemplateElement::RawString(_) | TemplateElement::Comment(_) => false,
        TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) | TemplateElement::HelperBlock(h) => {
            [&h.template, &h.inverse]
                .into_iter()
                .flatten()
                .any(|t| t.elements.iter().any(has_partial))
        }
        _ => true,
    }
}

/// Whether any name, path or literal in `elements` mentions `services`
/// (conservative: a string that merely contains the word counts).
fn reads_services(elements: &[TemplateElement]) -> bool {
    fn parameter(p: &Parameter) -> bool {
        match p {
            Parameter::Name(name) => name.contains("services"),
            Parameter::Path(Path::Relative((_, raw))) | Parameter::Path(Path::Local((_, _, raw))) => {
                raw.contains("services")
            }
            Parameter::Literal(value) => value.to_string().contains("services"),
            Parameter::Subexpression(sub) => element(&sub.element),
            _ => true,
        }
    }
    fn element(e: &TemplateElement) -> bool {
        match e {
            TemplateElement::RawString(_) | TemplateElement::Comment(_) => false,
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) | TemplateElement::HelperBlock(h) => {
                parameter(&h.name)
                    || h.params.iter().any(parameter)
                    || h.hash.values().any(parameter)
                    || [&h.template, &h.inverse]
                        .into_iter()
                        .flatten()
                        .any(|t| reads_services(&t.elements))
            }
            TemplateElement::DecoratorExpression(d)
            | TemplateElement::DecoratorBlock(d)
            | TemplateElement::PartialExpression(d)
            | TemplateElement::PartialBlock(d) => {
                parameter(&d.name)
                    || d.params.iter().any(parameter)
                    || d.hash.values().any(parameter)
                    || d.template.as_ref().is_some_and(|t| reads_services(&t.elements))
            }
            _ => true,
        }
    }
    elements.iter().any(element)
}

/// One service's text, and what it was rendered from (shared with the
/// snapshot: the next one usually holds the same `Arc`, which is then not
/// compared server by server).
struct Rendered {
    service: Arc<Service>,
    index: usize,
    last: bool,
    text: String,
}

/// The last render in parts: its frame context, the frame's text from it
/// and the services' texts rendered with it.
#[derive(Default)]
pub(super) struct Cache {
    /// Null before the first render, which no frame context equals.
    root: Value,
    frame: String,
    services: HashMap<ServiceName, Rendered>,
}

impl Split {
    /// `snapshot` rendered with `frame` registered as `frame_name`; `None`
    /// on any error (the caller renders whole for its error).
    pub fn render(
        &self,
        registry: &Handlebars<'static>,
        frame_name: &str,
        cache: &Mutex<Cache>,
        settings: &ContextSettings,
        snapshot: &Snapshot,
    ) -> Option<String> {
        let mut root = serde_json::to_value(Context::frame(settings, snapshot)).ok()?;
        root.as_object_mut()?.remove("services");
        let root = handlebars::Context::from(root);

        let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The frame (routes, settings) rarely changes when a container does:
        // its text is rendered again only when its context did.
        if &cache.root != root.data() {
            cache.frame = registry.render_with_context(frame_name, &root).ok()?;
            cache.services.clear();
            cache.root = root.data().clone();
        }
        let cache = &mut *cache;
        let (before, after) = cache.frame.split_once(MARKER)?;
        let count = snapshot.services.len();
        let mut rendered = Vec::with_capacity(count);
        for (index, service) in snapshot.services.iter().enumerate() {
            let last = index + 1 == count;
            let kept = cache.services.remove(&service.name).filter(|r| {
                r.index == index && r.last == last && (Arc::ptr_eq(&r.service, service) || r.service == *service)
            });
            let entry = match kept {
                Some(entry) => entry,
                None => Rendered {
                    text: self.render_service(registry, &root, ContextService::new(service, settings), index, last)?,
                    service: service.clone(),
                    index,
                    last,
                },
            };
            rendered.push(entry);
        }
        let length = before.len() + after.len() + rendered.iter().map(|r| r.text.len()).sum::<usize>();
        let mut text = String::with_capacity(length);
        text.push_str(before);
        for entry in &rendered {
            text.push_str(&entry.text);
        }
        text.push_str(after);
        // Services no longer in the snapshot are dropped with the old map.
        cache.services = rendered.into_iter().map(|r| (r.service.name.clone(), r)).collect();
        Some(text)
    }

    /// The block for one service, as `{{#each}}` renders it: the service
    /// as `this`, with `@index`, `@first` and `@last`.
    fn render_service(
        &self,
        registry: &Handlebars<'static>,
        root: &handlebars::Context,
        service: ContextService,
        index: usize,
        last: bool,
    ) -> Option<String> {
        let mut block = BlockContext::new();
        block.set_base_value(serde_json::to_value(service).ok()?);
        block.set_local_var("first", Value::Bool(index == 0));
        block.set_local_var("last", Value::Bool(last));
        block.set_local_var("index", Value::from(index));
        let mut rc = RenderContext::new(None);
        rc.push_block(block);
        let mut out = StringOutput::new();
        self.block.render(registry, root, &mut rc, &mut out).ok()?;
        // Kept until the service changes, in room for 8 KiB (handlebars'
        // output buffer) where a 20-server service needs 2: 500 services
        // held 4 MiB.
        let mut text = out.into_string().ok()?;
        text.shrink_to_fit();
        Some(text)
    }
}
