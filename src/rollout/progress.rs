//! Rollout progress. On a terminal (stderr): one live line per
//! replacement, drawn by indicatif. Elsewhere (a pipe, a CI log): a plain
//! line on stdout each time a replacement's state changes.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

pub struct Progress {
    rows: Vec<Row>,
    /// `None` when stderr is not a terminal.
    bars: Option<MultiProgress>,
}

struct Row {
    label: String,
    state: String,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(labels: Vec<String>) -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let width = labels.iter().map(String::len).max().unwrap_or(0);
        let style = ProgressStyle::with_template(&format!("  {{prefix:{width}}}  {{spinner}} {{msg:40}} {{secs:>6}}"))
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key("secs", |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = out.write_str(&seconds(state.elapsed()));
            });
        let rows = labels
            .into_iter()
            .map(|label| Row {
                bar: bars.as_ref().map(|bars| {
                    let bar = bars.add(ProgressBar::new_spinner().with_style(style.clone()));
                    bar.set_prefix(label.clone());
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar
                }),
                label,
                state: String::new(),
            })
            .collect();
        Self { rows, bars }
    }

    /// Sets row `i`; a plain line is printed only when the state changed.
    pub fn update(&mut self, i: usize, state: &str, elapsed: Duration) {
        let Some(row) = self.rows.get_mut(i) else { return };
        if row.state == state {
            return;
        }
        row.state = state.to_owned();
        match &row.bar {
            Some(bar) => bar.set_message(state.to_owned()),
            None => println!("  {}  {state} ({})", row.label, seconds(elapsed)),
        }
    }

    /// Leaves the lines as they are: what follows prints below.
    pub fn finish(self) {
        for bar in self.rows.iter().filter_map(|r| r.bar.as_ref()) {
            bar.finish();
        }
        drop(self.bars);
    }
}

pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
