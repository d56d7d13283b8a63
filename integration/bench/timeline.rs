//! A run as a picture: requests served and failed per second, and the p99
//! latency of each second, one panel each, with the deploy's steps drawn
//! as vertical lines across all three. Written as SVG (plotters), which
//! the README shows.

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use crate::load::Sample;

/// A moment of the deploy to mark: when (from the start of the load) and what.
pub struct Mark {
    pub at: Duration,
    pub label: String,
}

/// A panel: its caption, its points, their colour, and the least top of its y axis.
type Panel<'a> = (&'a str, &'a [(f64, f64)], RGBColor, f64);

/// One second of the run.
#[derive(Default, Clone)]
struct Second {
    ok: u32,
    failed: u32,
    latencies: Vec<Duration>,
}

fn seconds(samples: &[Sample]) -> Vec<Second> {
    let mut out: Vec<Second> = Vec::new();
    for sample in samples {
        let i = sample.at.as_secs() as usize;
        if out.len() <= i {
            out.resize(i + 1, Second::default());
        }
        let second = &mut out[i];
        if sample.ok {
            second.ok += 1;
            second.latencies.push(sample.latency);
        } else {
            second.failed += 1;
        }
    }
    out
}

/// The 99th percentile of `sorted`, in ms.
fn p99_ms(sorted: &[Duration]) -> f64 {
    let rank = (sorted.len() * 99).div_ceil(100).max(1) - 1;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Draws `samples` and `marks` into the SVG file at `path`.
pub fn write_svg(path: &Path, title: &str, samples: &[Sample], marks: &[Mark]) -> Result<(), String> {
    let mut per_second = seconds(samples);
    for second in &mut per_second {
        second.latencies.sort();
    }
    let end = per_second.len().max(1) as f64;
    // Each second is drawn at its middle, where the marks of its moments fall.
    let middle = |i: usize| i as f64 + 0.5;
    let served: Vec<(f64, f64)> = per_second
        .iter()
        .enumerate()
        .map(|(i, s)| (middle(i), f64::from(s.ok)))
        .collect();
    let failed: Vec<(f64, f64)> = per_second
        .iter()
        .enumerate()
        .map(|(i, s)| (middle(i), f64::from(s.failed)))
        .collect();
    let p99: Vec<(f64, f64)> = per_second
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.latencies.is_empty())
        .map(|(i, s)| (middle(i), p99_ms(&s.latencies)))
        .collect();
    let top = |points: &[(f64, f64)], at_least: f64| points.iter().map(|p| p.1).fold(at_least, f64::max) * 1.15;

    let root = SVGBackend::new(path, (900, 620)).into_drawing_area();
    let error = |e: DrawingAreaErrorKind<_>| format!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(error)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(error)?;
    let panels = root.split_evenly((3, 1));
    let series: [Panel; 3] = [
        ("requests served /s", &served, RGBColor(0, 128, 128), 10.0),
        ("failed requests /s", &failed, RGBColor(200, 30, 30), 1.0),
        ("p99 latency (ms), per second", &p99, RGBColor(60, 60, 160), 1.0),
    ];
    for (i, (panel, (name, points, colour, at_least))) in panels.iter().zip(series).enumerate() {
        let last = i == 2;
        let y_top = top(points, at_least);
        let mut chart = ChartBuilder::on(panel)
            .margin(8)
            .x_label_area_size(if last { 30 } else { 8 })
            .y_label_area_size(55)
            .caption(name, ("sans-serif", 14))
            .build_cartesian_2d(0f64..end, 0f64..y_top)
            .map_err(error)?;
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(WHITE.mix(0.0)).disable_x_mesh().y_labels(4);
        if last {
            mesh.x_desc("seconds since the load started");
        } else {
            mesh.x_labels(0);
        }
        mesh.draw().map_err(error)?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
            .map_err(error)?;
        for (row, mark) in marks.iter().enumerate() {
            let x = mark.at.as_secs_f64();
            chart
                .draw_series(LineSeries::new([(x, 0.0), (x, y_top)], BLACK.mix(0.35)))
                .map_err(error)?;
            if i == 0 {
                chart
                    .draw_series([Text::new(
                        mark.label.clone(),
                        // Three rows of labels: marks close together stay readable.
                        (x + end * 0.005, y_top * (0.95 - 0.12 * (row % 3) as f64)),
                        ("sans-serif", 12),
                    )])
                    .map_err(error)?;
            }
        }
    }
    root.present().map_err(error)?;
    Ok(())
}
