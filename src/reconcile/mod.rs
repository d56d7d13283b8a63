//! Deciding what to apply: the one place that knows whether a change goes
//! through HAProxy's runtime API or needs a reload.
//!
//! [`decide`] is pure: from what was last applied, the next snapshot and its
//! rendered text, it gives a [`Decision`]. The [`driver`] is the loop around
//! it (the spacing of reloads, urgency, template and certificate edits, the
//! deferred check of the mirrored file); an [`Executor`] does the I/O (`crate::apply`).

mod command;
pub mod driver;
mod isolating;
mod outputs;
mod plan;
mod rendering;

use std::sync::Arc;

use crate::model::Snapshot;

pub use command::{Command, Target};
pub use driver::{Driver, Events, Executor};
pub use isolating::Isolation;
pub use outputs::ApplyOutputs;
pub use plan::plan;
pub use rendering::{InputsId, Rendering};

/// What HAProxy runs now, as teal applied it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub snapshot: Arc<Snapshot>,
    pub text: String,
    /// The template, settings and certificates `text` was rendered with.
    pub inputs: InputsId,
}

/// What to do to make HAProxy run the next rendered text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Unchanged,
    /// Only servers changed: these commands, then the file rewritten to agree.
    Runtime(Vec<Command>),
    /// Validate this text, put it in place and reload.
    Reload(String),
}

/// `rendering_changed`: the rendering inputs differ from those of the last
/// apply in a way that shows in its text ([`Reconciled::rendering_changed`]);
/// the runtime API can only carry server changes.
pub fn decide(last: Option<&Applied>, next: &Snapshot, text: &str, rendering_changed: bool) -> Decision {
    let Some(last) = last else {
        return Decision::Reload(text.to_owned());
    };
    if last.text == text {
        return Decision::Unchanged;
    }
    if rendering_changed {
        return Decision::Reload(text.to_owned());
    }
    match plan(&last.snapshot, next) {
        Some(commands) => Decision::Runtime(commands),
        None => Decision::Reload(text.to_owned()),
    }
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    /// Applied through the runtime API with this many commands; no reload.
    Runtime(usize),
    Reloaded,
    /// HAProxy was started on this config (supervise mode).
    Started,
    /// `--reload none`: the file was written, nothing signalled.
    Written,
}

impl Outcome {
    /// The word `/status` shows.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::Runtime(_) => "runtime",
            Outcome::Reloaded => "reloaded",
            Outcome::Started => "started",
            Outcome::Written => "written",
        }
    }
}

/// The reconcile state the driver owns.
#[derive(Debug, Default)]
pub struct Reconciled {
    applied: Option<Applied>,
    /// The file on disk holds runtime API changes `haproxy -c` has not
    /// checked yet.
    mirror_unchecked: bool,
    /// When the last reload began: the next one waits out the debounce.
    last_reload: Option<tokio::time::Instant>,
}

impl Reconciled {
    pub fn applied(&self) -> Option<&Applied> {
        self.applied.as_ref()
    }

    /// Whether `rendering` may render the last applied snapshot differently
    /// from its applied text: only then must the next change be a reload.
    /// Rendered again only after an edit: at 10,000 servers a render takes
    /// 40-70 ms. Inputs that render the same text are adopted.
    pub fn rendering_changed(&mut self, rendering: &Rendering) -> bool {
        let Some(applied) = &mut self.applied else {
            return false;
        };
        if applied.inputs == rendering.id() {
            return false;
        }
        if rendering.render(&applied.snapshot).is_ok_and(|t| t == applied.text) {
            applied.inputs = rendering.id();
            return false;
        }
        true
    }

    /// True when every change to `next` takes servers out of rotation: it
    /// never waits for a reload's window.
    pub fn urgent(&self, next: &Snapshot) -> bool {
        self.applied
            .as_ref()
            .is_some_and(|applied| applied.snapshot.only_takes_servers_out(next))
    }

    fn set_applied(&mut self, applied: Applied, mirror_unchecked: bool) {
        self.applied = Some(applied);
        self.mirror_unchecked = mirror_unchecked;
    }
}

#[cfg(test)]
pub(crate) mod tests;
