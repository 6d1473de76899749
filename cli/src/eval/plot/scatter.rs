//! A 2-D scatter of points coloured by class, with the class names in a legend panel beside
//! the plot (the t-SNE figure).
use std::path::Path;

use plotters::prelude::*;

use super::{render, tick, FONT, PALETTE};
use crate::eval::error::{EvalError, Result};

#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    /// Index into the class names; at most 20 classes (one palette colour each).
    pub class: usize,
}

pub fn scatter_by_class(
    path: &Path,
    title: &str,
    axis_labels: (&str, &str),
    points: &[Point],
    class_names: &[String],
) -> Result<()> {
    if points.is_empty() || class_names.len() > PALETTE.len() {
        return Err(EvalError::Invalid(format!(
            "{title}: needs points and at most {} classes (got {} points, {} classes)",
            PALETTE.len(),
            points.len(),
            class_names.len()
        )));
    }
    if let Some(p) = points.iter().find(|p| p.class >= class_names.len()) {
        return Err(EvalError::Invalid(format!(
            "{title}: point of class {} but {} class names",
            p.class,
            class_names.len()
        )));
    }
    let span = |f: fn(&Point) -> f64| {
        let (lo, hi) = points
            .iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let pad = 0.05 * (hi - lo).max(1e-9);
        (lo - pad)..(hi + pad)
    };
    let (xs, ys) = (span(|p| p.x), span(|p| p.y));

    render(path, (1100, 800), |root| {
        let (plot_area, legend_area) = root.split_horizontally(820);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, (FONT, 26))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(xs, ys)?;
        chart
            .configure_mesh()
            .x_desc(axis_labels.0)
            .y_desc(axis_labels.1)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 18))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (class, &colour) in PALETTE.iter().enumerate().take(class_names.len()) {
            chart.draw_series(
                points
                    .iter()
                    .filter(|p| p.class == class)
                    .map(|p| Circle::new((p.x, p.y), 3, colour.filled())),
            )?;
        }
        legend_area.draw(&Text::new("classes", (10, 40), (FONT, 20)))?;
        for (class, name) in class_names.iter().enumerate() {
            let y = 80 + 32 * class as i32;
            legend_area.draw(&Circle::new((18, y), 7, PALETTE[class].filled()))?;
            legend_area.draw(&Text::new(name.as_str(), (34, y - 9), (FONT, 17)))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::check_png;
    use super::*;

    #[test]
    fn writes_a_png_and_checks_classes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.png");
        let points: Vec<Point> = (0..300)
            .map(|i| {
                let class = i % 3;
                let angle = i as f64 * 0.1;
                Point {
                    x: 5.0 * class as f64 + angle.cos(),
                    y: angle.sin(),
                    class,
                }
            })
            .collect();
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        scatter_by_class(&path, "t-SNE", ("x", "y"), &points, &names).unwrap();
        check_png(&path, 1100, 800);
        assert!(scatter_by_class(&path, "t", ("x", "y"), &points, &names[..2]).is_err());
    }
}
