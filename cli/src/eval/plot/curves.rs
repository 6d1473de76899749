//! Line charts of one or more series against a shared x axis (training curves).
use std::path::Path;

use plotters::prelude::*;

use super::{render, tick, FONT, PALETTE};
use crate::eval::error::{EvalError, Result};

/// A named curve of (x, y) points, drawn in order.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Where the legend sits; pick the corner the curves leave free.
pub use plotters::chart::SeriesLabelPosition as LegendCorner;

pub fn line_chart(
    path: &Path,
    title: &str,
    axis_labels: (&str, &str),
    series: &[Series],
    log_y: bool,
    legend_corner: LegendCorner,
) -> Result<()> {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.clone()).collect();
    if all.is_empty() || all.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return Err(EvalError::Invalid(format!(
            "{title}: nothing to draw, or a non-finite value"
        )));
    }
    if log_y && all.iter().any(|&(_, y)| y <= 0.0) {
        return Err(EvalError::Invalid(format!(
            "{title}: a logarithmic axis needs positive values"
        )));
    }
    let (x0, x1) = bounds(all.iter().map(|p| p.0));
    let (y0, y1) = bounds(all.iter().map(|p| p.1));
    render(path, (900, 600), |root| {
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(title, (FONT, 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80);
        // The two axis types are different Rust types, hence the two branches.
        if log_y {
            let mut chart = builder.build_cartesian_2d(x0..x1, (y0 / 1.2..y1 * 1.2).log_scale())?;
            chart
                .configure_mesh()
                .x_desc(axis_labels.0)
                .y_desc(axis_labels.1)
                .x_label_formatter(&|v| tick(*v))
                .label_style((FONT, 16))
                .axis_desc_style((FONT, 18))
                .draw()?;
            for (k, s) in series.iter().enumerate() {
                let colour = PALETTE[k % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(s.points.clone(), colour.stroke_width(2)))?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
            }
            legend(&mut chart, legend_corner)
        } else {
            let pad = 0.05 * (y1 - y0).max(1e-9);
            let mut chart = builder.build_cartesian_2d(x0..x1, y0 - pad..y1 + pad)?;
            chart
                .configure_mesh()
                .x_desc(axis_labels.0)
                .y_desc(axis_labels.1)
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .label_style((FONT, 16))
                .axis_desc_style((FONT, 18))
                .draw()?;
            for (k, s) in series.iter().enumerate() {
                let colour = PALETTE[k % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(s.points.clone(), colour.stroke_width(2)))?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
                if s.points.len() <= 60 {
                    chart.draw_series(
                        s.points.iter().map(|&p| Circle::new(p, 4, colour.filled())),
                    )?;
                }
            }
            legend(&mut chart, legend_corner)
        }
    })
}

fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    corner: LegendCorner,
) -> super::DrawResult {
    chart
        .configure_series_labels()
        .position(corner)
        .label_font((FONT, 18))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The range of `values`, widened when it is a single value.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::check_png;
    use super::*;

    #[test]
    fn writes_linear_and_log_charts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let series = [Series {
            label: "loss".into(),
            points: (1..200)
                .map(|i| (i as f64, 3.0 / (i as f64).sqrt()))
                .collect(),
        }];
        let corner = || LegendCorner::UpperRight;
        line_chart(&path, "loss", ("step", "loss"), &series, false, corner()).unwrap();
        check_png(&path, 900, 600);
        line_chart(&path, "loss", ("step", "loss"), &series, true, corner()).unwrap();
        check_png(&path, 900, 600);
        let negative = [Series {
            label: "x".into(),
            points: vec![(0.0, -1.0)],
        }];
        assert!(line_chart(&path, "t", ("x", "y"), &negative, true, corner()).is_err());
        assert!(line_chart(&path, "t", ("x", "y"), &[], false, corner()).is_err());
    }
}
