//! Overlaid histograms of several distributions on one axis, each normalised to unit area so
//! that distributions of very different sizes (few positive pairs, many negative ones) compare.
use std::path::Path;

use plotters::prelude::*;

use super::{render, tick, FONT, PALETTE};
use crate::eval::error::{EvalError, Result};

/// One distribution: its legend label and its samples.
pub struct Distribution<'a> {
    pub label: &'a str,
    pub values: &'a [f32],
}

/// `bins` equal bins over `range`; samples outside are clipped into the end bins.
pub fn overlaid_histograms(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[Distribution],
    bins: usize,
    range: (f64, f64),
) -> Result<()> {
    if bins == 0 || range.1 <= range.0 || series.iter().any(|s| s.values.is_empty()) {
        return Err(EvalError::Invalid(format!(
            "{title}: a histogram needs bins, a non-empty range and samples in every series"
        )));
    }
    let width = (range.1 - range.0) / bins as f64;
    let densities: Vec<Vec<f64>> = series
        .iter()
        .map(|s| {
            let mut counts = vec![0usize; bins];
            for &v in s.values {
                let bin = ((f64::from(v) - range.0) / width).floor();
                counts[bin.clamp(0.0, (bins - 1) as f64) as usize] += 1;
            }
            let total = s.values.len() as f64;
            counts.iter().map(|&c| c as f64 / (total * width)).collect()
        })
        .collect();
    let top = densities.iter().flatten().fold(0.0f64, |m, &d| m.max(d)) * 1.1;

    render(path, (900, 600), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(range.0..range.1, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("density")
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 18))
            .draw()?;
        for (k, (s, density)) in series.iter().zip(&densities).enumerate() {
            let colour = PALETTE[k % PALETTE.len()];
            let bars = density.iter().enumerate().map(|(b, &d)| {
                let x0 = range.0 + b as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, d)], colour.mix(0.45).filled())
            });
            chart
                .draw_series(bars)?
                .label(format!("{} (n = {})", s.label, s.values.len()))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 18, y + 6)], colour.mix(0.6).filled())
                });
            // The outline keeps the shape readable where the two fills overlap.
            let outline = density.iter().enumerate().flat_map(|(b, &d)| {
                let x0 = range.0 + b as f64 * width;
                [(x0, d), (x0 + width, d)]
            });
            chart.draw_series(LineSeries::new(outline, colour.stroke_width(2)))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 18))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::check_png;
    use super::*;

    #[test]
    fn writes_a_png_and_rejects_empty_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.png");
        let a: Vec<f32> = (0..500)
            .map(|i| 0.6 + 0.3 * ((i as f32) * 0.37).sin())
            .collect();
        let b: Vec<f32> = (0..2000).map(|i| 0.1 * ((i as f32) * 0.11).cos()).collect();
        let series = [
            Distribution {
                label: "positive pairs",
                values: &a,
            },
            Distribution {
                label: "negative pairs",
                values: &b,
            },
        ];
        overlaid_histograms(&path, "test", "cosine similarity", &series, 50, (-1.0, 1.0)).unwrap();
        check_png(&path, 900, 600);
        let empty = [Distribution {
            label: "none",
            values: &[],
        }];
        assert!(overlaid_histograms(&path, "t", "x", &empty, 50, (-1.0, 1.0)).is_err());
    }
}
