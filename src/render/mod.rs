//! Snapshot -> template context -> haproxy.cfg text. Pure: no I/O but
//! reading the template file the caller names.

mod context;
mod server_options;
mod services;

use std::path::Path;
use std::sync::{Arc, Mutex};

use handlebars::Handlebars;
use sha2::{Digest, Sha256};

use crate::model::Snapshot;

pub use context::{Context, ContextSettings, HoldSettings, MAX_HELD_PER_SERVICE};
pub use server_options::{config_weight, ServerDefaults};

/// The template shipped in `haproxy/`, used when `--template` is not given.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../haproxy/haproxy.cfg.hbs");

/// The Lua action the default template's hold rule calls, written to
/// `--state-dir` by `run` and `check`.
pub const HOLD_SCRIPT: &str = include_str!("../../haproxy/hold.lua");

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read template {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("template does not parse: {0}")]
    Parse(String),
    #[error("template failed to render: {0}")]
    Render(String),
}

/// A parsed template, ready to render contexts.
#[derive(Clone)]
pub struct Renderer {
    registry: Handlebars<'static>,
    source_digest: [u8; 32],
    /// The template cut around its services, when it can be rendered in
    /// parts (registered as [`FRAME`]); `None`: rendered whole.
    split: Option<Arc<services::Split>>,
    /// Each service's text from the last render in parts; shared by
    /// clones, which render the same template.
    cache: Arc<Mutex<services::Cache>>,
}

const NAME: &str = "haproxy.cfg";
const FRAME: &str = "haproxy.cfg (frame)";

impl Renderer {
    pub fn new(template: &str) -> Result<Self, RenderError> {
        let mut registry = Handlebars::new();
        // A misspelt field is an error, not an empty string in haproxy.cfg.
        registry.set_strict_mode(true);
        // Values are validated before they get here, and HTML escaping would
        // corrupt a config file.
        registry.register_escape_fn(handlebars::no_escape);
        registry
            .register_template_string(NAME, template)
            .map_err(|e| RenderError::Parse(e.to_string()))?;
        let split = registry.get_template(NAME).and_then(services::Split::of);
        if let Some(split) = &split {
            registry.register_template(FRAME, split.frame.clone());
        }
        Ok(Self {
            registry,
            source_digest: Sha256::digest(template).into(),
            split: split.map(Arc::new),
            cache: Arc::default(),
        })
    }

    /// SHA-256 of the template's text: equal digests render alike.
    pub fn source_digest(&self) -> [u8; 32] {
        self.source_digest
    }

    /// The template at `path`, or the embedded default.
    pub fn load(path: Option<&Path>) -> Result<Self, RenderError> {
        match path {
            None => Self::new(DEFAULT_TEMPLATE),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| RenderError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Self::new(&text)
            }
        }
    }

    pub fn render(&self, context: &Context) -> Result<String, RenderError> {
        self.registry
            .render(NAME, context)
            .map_err(|e| RenderError::Render(e.to_string()))
    }

    /// The same text as [`Renderer::render`] of `snapshot`'s context; only
    /// the services that changed since the last call are rendered again
    /// (see [`services`]).
    pub fn render_snapshot(&self, settings: &ContextSettings, snapshot: &Snapshot) -> Result<String, RenderError> {
        let in_parts = self
            .split
            .as_ref()
            .and_then(|split| split.render(&self.registry, FRAME, &self.cache, settings, snapshot));
        match in_parts {
            Some(text) => Ok(text),
            None => self.render(&Context::new(settings, snapshot)),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_injection;
#[cfg(test)]
mod tests_services;
#[cfg(test)]
mod tests_tls;
