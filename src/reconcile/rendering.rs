//! The rendering inputs (template, settings, certificates) and their identity.

use sha2::{Digest, Sha256};

use crate::model::Snapshot;
use crate::render::{ContextSettings, RenderError, Renderer};

/// Identifies a template and context settings (certificate digests
/// included): equal ids render any snapshot to the same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputsId([u8; 32]);

/// A parsed template and the settings it renders with.
#[derive(Clone)]
pub struct Rendering {
    renderer: Renderer,
    context: ContextSettings,
    id: InputsId,
}

impl Rendering {
    pub fn new(renderer: Renderer, context: ContextSettings) -> Self {
        let id = identify(&renderer, &context);
        Self { renderer, context, id }
    }

    pub fn id(&self) -> InputsId {
        self.id
    }

    pub fn context(&self) -> &ContextSettings {
        &self.context
    }

    pub fn render(&self, snapshot: &Snapshot) -> Result<String, RenderError> {
        self.renderer.render_snapshot(&self.context, snapshot)
    }

    pub fn set_template(&mut self, renderer: Renderer) {
        self.renderer = renderer;
        self.id = identify(&self.renderer, &self.context);
    }

    pub fn set_context(&mut self, context: ContextSettings) {
        self.context = context;
        self.id = identify(&self.renderer, &self.context);
    }
}

fn identify(renderer: &Renderer, context: &ContextSettings) -> InputsId {
    let mut hash = Sha256::new();
    hash.update(renderer.source_digest());
    // Plain data always serializes.
    hash.update(serde_json::to_vec(context).unwrap_or_default());
    InputsId(hash.finalize().into())
}
