//! PNG charts drawn with plotters into an RGB buffer and encoded with the `image` crate.
//! Text uses a font compiled into the binary (`cli/assets/fonts/`), so charts look the same
//! on machines without system fonts.
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::error::{EvalError, Result};

mod curves;
mod histogram;
mod scatter;

pub use curves::{line_chart, LegendCorner, Series};
pub use histogram::{overlaid_histograms, Distribution};
pub use scatter::{scatter_by_class, Point};

/// The family name every chart asks for.
pub(crate) const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-subset.ttf");

/// Ten distinguishable colours (matplotlib's "tab10"), then their lighter partners ("tab20").
pub(crate) const PALETTE: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(199, 199, 199),
    RGBColor(219, 219, 141),
    RGBColor(158, 218, 229),
];

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// An axis label: whole numbers without decimals, small ones in scientific notation, and
/// never "-0".
pub(crate) fn tick(v: f64) -> String {
    if v.abs() < 1e-12 {
        "0".into()
    } else if v.fract() == 0.0 && v.abs() < 1e7 {
        format!("{v:.0}")
    } else if v.abs() < 1e-2 {
        format!("{v:.1e}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Draws a `width × height` chart with `draw` on a white canvas and writes it to `path` as PNG.
pub(crate) fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area) -> DrawResult,
) -> Result<()> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The font is a fixed, valid file compiled in; failing to parse it is a build error.
        if plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            panic!("the embedded chart font does not parse");
        }
    });
    let plot_error = |msg: String| EvalError::Plot {
        path: path.to_path_buf(),
        msg,
    };
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(e.to_string()))?;
        draw(&root).map_err(|e| plot_error(e.to_string()))?;
        root.present().map_err(|e| plot_error(e.to_string()))?;
    }
    let image = image::RgbImage::from_raw(width, height, pixels).expect("buffer fits the size");
    image
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| plot_error(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::tick;

    /// Decodes a written PNG and checks its size and that it is not one flat colour; returns
    /// the number of distinct colours.
    pub(crate) fn check_png(path: &Path, width: u32, height: u32) -> usize {
        let image = image::open(path)
            .unwrap_or_else(|e| panic!("{} is not a readable PNG: {e}", path.display()))
            .into_rgb8();
        assert_eq!(image.dimensions(), (width, height), "{}", path.display());
        let colours: std::collections::HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 8, "{} is (nearly) blank", path.display());
        colours.len()
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick(-1e-20), "0");
        assert_eq!(tick(450.0), "450");
        assert_eq!(tick(0.0006), "6.0e-4");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(97.125), "97.125");
    }
}
