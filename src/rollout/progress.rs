//! Rollout progress on stdout. On a terminal: one line per replacement,
//! redrawn in place. Elsewhere (a pipe, a CI log): a plain line each time a
//! replacement's state changes.

use std::io::{IsTerminal, Write};
use std::time::Duration;

pub struct Progress {
    tty: bool,
    rows: Vec<Row>,
    /// Row lines currently on the terminal, below the cursor's start.
    drawn: usize,
}

struct Row {
    label: String,
    state: String,
    elapsed: Duration,
}

impl Progress {
    pub fn new(labels: Vec<String>) -> Self {
        let width = labels.iter().map(String::len).max().unwrap_or(0);
        Self {
            tty: std::io::stdout().is_terminal(),
            rows: labels
                .into_iter()
                .map(|label| Row {
                    label: format!("{label:width$}"),
                    state: String::new(),
                    elapsed: Duration::ZERO,
                })
                .collect(),
            drawn: 0,
        }
    }

    /// Sets row `i`; a plain line is printed only when the state changed.
    pub fn update(&mut self, i: usize, state: &str, elapsed: Duration) {
        let Some(row) = self.rows.get_mut(i) else { return };
        let changed = row.state != state;
        row.state = state.to_owned();
        row.elapsed = elapsed;
        if !self.tty && changed {
            println!("  {}  {state} ({})", row.label.trim_end(), seconds(elapsed));
        }
    }

    /// Redraws the rows on a terminal; nothing elsewhere.
    pub fn draw(&mut self) {
        if !self.tty {
            return;
        }
        let mut out = std::io::stdout().lock();
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        for row in &self.rows {
            let _ = writeln!(
                out,
                "\r\x1b[2K  {}  {:<40} {:>6}",
                row.label,
                row.state,
                seconds(row.elapsed)
            );
        }
        let _ = out.flush();
        self.drawn = self.rows.len();
    }

    /// Leaves the rows as they are and moves on: what follows prints below.
    pub fn finish(&mut self) {
        self.draw();
        self.drawn = 0;
    }
}

pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
