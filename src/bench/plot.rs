//! `bench load --plot FILE.svg`: the latency percentile curves of one or more load runs
//! as an SVG chart (plotters, SVG backend only). It owns the sampling of each run's HDR
//! histogram along a "nines" axis (0, 90, 99, 99.9 … %, as HdrHistogram's plots), the
//! drawing, and writing the file; the CLI glue in `mod.rs` decides titles and names.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Why no chart was written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Every run's histogram is empty: there is no curve to draw.
    #[error("no latencies were recorded, so there is nothing to plot")]
    NoData,
    /// plotters refused to draw.
    #[error("cannot draw the chart: {0}")]
    Render(String),
    /// The target cannot be used or written.
    #[error("cannot write the plot to {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}

/// Points sampled along each curve, and one colour (0xRRGGBB) per run, then repeated.
const POINTS: u32 = 240;
const COLOURS: [u32; 6] = [0x1f77b4, 0xd62728, 0x2ca02c, 0xff7f0e, 0x9467bd, 0x8c564b];

/// The SVG text of a chart with one latency curve per run: x is the percentile on a
/// "nines" scale (x = n puts 1 − 10⁻ⁿ at n: 0, 90, 99, 99.9 %), y the latency in ms on a
/// log scale (hits and origin calls are orders of magnitude apart). Histograms hold
/// microseconds, as every histogram in this crate does.
///
/// # Errors
/// `NoData` when every histogram is empty, `Render` when plotters fails.
pub fn percentile_svg(runs: &[(&str, &Histogram<u64>)], title: &str) -> Result<String, PlotError> {
    let most = runs.iter().map(|(_, h)| h.len()).max();
    let most = most.filter(|&n| n > 0).ok_or(PlotError::NoData)?;
    // As many nines as the largest run can resolve, between 2 (99 %) and 6.
    let nines = ((most as f64).log10().ceil() as u32).clamp(2, 6);
    let curves: Vec<Vec<(f64, f64)>> = runs.iter().map(|(_, h)| curve(h, nines)).collect();
    let values = curves.iter().flatten().map(|&(_, ms)| ms);
    let low = values.clone().fold(f64::INFINITY, f64::min);
    let high = values.fold(0.0, f64::max);
    let (low, high) = (low * 0.8, (high * 1.25).max(low * 2.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(render)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..f64::from(nines), (low..high).log_scale())
            .map_err(render)?;
        chart
            .configure_mesh()
            .x_labels(nines as usize + 1)
            .x_label_formatter(&|x| percent_label(*x))
            .y_label_formatter(&|y| ms_label(*y))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .x_desc("percentile (%)")
            .y_desc("latency (ms, log scale)")
            .draw()
            .map_err(render)?;
        for (i, ((name, _), points)) in runs.iter().zip(curves).enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            let style = RGBColor((c >> 16) as u8, (c >> 8) as u8, c as u8).stroke_width(2);
            chart
                .draw_series(LineSeries::new(points, style))
                .map_err(render)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(render)?;
        root.present().map_err(render)?;
    }
    Ok(svg)
}

/// `(nines, ms)` points of one run; none for an empty histogram.
fn curve(h: &Histogram<u64>, nines: u32) -> Vec<(f64, f64)> {
    let points = if h.is_empty() { 0 } else { POINTS + 1 };
    let x = |i: u32| f64::from(nines) * f64::from(i) / f64::from(POINTS);
    let ms = |x: f64| h.value_at_quantile(1.0 - 10f64.powf(-x)).max(1) as f64 / 1000.0;
    (0..points).map(|i| (x(i), ms(x(i)))).collect()
}

fn render(e: impl std::fmt::Display) -> PlotError {
    PlotError::Render(e.to_string())
}

/// The percentile at `x` nines: 0, 90, 99, 99.9, 99.99 …
fn percent_label(x: f64) -> String {
    let decimals = ((x - 1e-6).ceil().max(0.0) as usize).saturating_sub(2);
    format!("{:.*}", decimals, 100.0 * (1.0 - 10f64.powf(-x)))
}

/// Milliseconds without float noise: 0.1, 1, 250.
fn ms_label(ms: f64) -> String {
    let text = format!("{ms:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Refuses, before a long run rather than after it, a target that is a directory or
/// whose directory does not exist.
///
/// # Errors
/// `Write` naming the path and the reason.
pub fn check_target(path: &Path) -> Result<(), PlotError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let reason = if path.is_dir() {
        "it is a directory"
    } else if !dir.unwrap_or(Path::new(".")).is_dir() {
        "its directory does not exist"
    } else {
        return Ok(());
    };
    Err(PlotError::Write {
        path: path.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Writes the whole SVG in one call.
///
/// # Errors
/// `Write` with the I/O error.
pub fn write_file(path: &Path, svg: &str) -> Result<(), PlotError> {
    std::fs::write(path, svg).map_err(|e| PlotError::Write {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two runs give an SVG with both series in the legend, the axis labels, the title
    /// and the nines ticks; no data is an error, not an empty chart.
    #[test]
    fn two_runs_render_with_legend_and_labels() {
        let mut fast = crate::metrics::empty_histogram();
        let mut slow = fast.clone();
        for i in 1..=2000 {
            fast.saturating_record(100 + i % 50);
            slow.saturating_record(if i % 100 == 0 { 300_000 } else { 400 + i });
        }
        let svg =
            percentile_svg(&[("memory-only", &fast), ("memory+redis", &slow)], "A & B").unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Each <text> holds its string on a line of its own.
        let texts: Vec<&str> = svg
            .split("</text>")
            .filter_map(|t| t.rsplit('>').next().map(str::trim))
            .collect();
        let expected = "memory-only|memory+redis|percentile (%)|latency (ms, log scale)|100";
        for text in expected
            .split('|')
            .chain(["A &amp; B", "0", "90", "99.99", "0.1"])
        {
            assert!(texts.contains(&text), "no {text:?} in {texts:?}");
        }
        for colour in ["#1F77B4", "#D62728"] {
            let lines = svg.matches(&format!("stroke=\"{colour}\"")).count();
            assert_eq!(lines, 2, "{colour}: a curve and its legend line");
        }
        let empty = crate::metrics::empty_histogram();
        assert!(matches!(
            percentile_svg(&[("none", &empty)], "t"),
            Err(PlotError::NoData)
        ));
    }

    /// A target that is a directory or in a missing one is refused, naming it.
    #[test]
    fn bad_targets_are_refused() {
        let missing = Path::new("/nonexistent-codette/p.svg");
        let e = check_target(missing).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent-codette/p.svg: its directory does not exist"),
            "{e}"
        );
        assert!(check_target(&std::env::temp_dir()).is_err());
        assert!(check_target(Path::new("p.svg")).is_ok());
        assert!(write_file(missing, "<svg/>").is_err());
    }
}
