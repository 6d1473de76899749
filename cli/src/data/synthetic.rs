//! A built-in image classification set that needs no download: each class is a combination of
//! a shape, a colour and a fill texture; each image places one such object at a random
//! position, size and rotation on a noisy, shaded background with a small distractor blob.
//! Images are drawn on demand from (seed, split, index), so the set costs no memory and every
//! image is the same on every run. Example `i` has class `i % classes` (balanced classes).
use std::f32::consts::PI;

use rand::Rng;

use super::error::{DataError, Result};
use super::image::Image;
use super::rng::{stream, Purpose};
use super::spec::SyntheticSpec;
use super::split::{Source, Split};
use super::Dataset;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Disc,
    Square,
    Triangle,
    Cross,
    Ring,
    Stripes,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Texture {
    Solid,
    Checker,
    Hatched,
    Dotted,
}

const SHAPES: [Shape; 6] = [
    Shape::Disc,
    Shape::Square,
    Shape::Triangle,
    Shape::Cross,
    Shape::Ring,
    Shape::Stripes,
];
const TEXTURES: [Texture; 4] = [
    Texture::Solid,
    Texture::Checker,
    Texture::Hatched,
    Texture::Dotted,
];
const COLOURS: [(&str, [f32; 3]); 8] = [
    ("red", [0.9, 0.15, 0.15]),
    ("orange", [0.95, 0.55, 0.1]),
    ("yellow", [0.9, 0.85, 0.15]),
    ("green", [0.2, 0.75, 0.25]),
    ("cyan", [0.15, 0.8, 0.85]),
    ("blue", [0.15, 0.3, 0.9]),
    ("purple", [0.55, 0.2, 0.8]),
    ("white", [0.95, 0.95, 0.95]),
];

/// Every (shape, texture, colour) triple at most once.
pub(crate) const MAX_CLASSES: usize = SHAPES.len() * TEXTURES.len() * COLOURS.len();

/// The look of a class. Consecutive classes change shape first, then texture; the colour
/// steps with every class, so even 10 classes use all three cues.
fn class_look(class: usize) -> (Shape, Texture, usize) {
    let shape = SHAPES[class % SHAPES.len()];
    let texture = TEXTURES[(class / SHAPES.len()) % TEXTURES.len()];
    // Two classes with equal shape and texture are k * 24 apart; their colours then differ by
    // k * 25 = k (mod 8), so the triple stays unique for all MAX_CLASSES classes.
    let colour = (class + class / (SHAPES.len() * TEXTURES.len())) % COLOURS.len();
    (shape, texture, colour)
}

fn class_name(class: usize) -> String {
    let (shape, texture, colour) = class_look(class);
    format!("{}-{:?}-{:?}", COLOURS[colour].0, shape, texture).to_lowercase()
}

pub(crate) fn open(spec: &SyntheticSpec, side: usize) -> Result<Dataset> {
    if spec.classes > MAX_CLASSES || side < 8 {
        return Err(DataError::Invalid(format!(
            "synthetic: {} classes of {side}x{side} images asked; at most {MAX_CLASSES} classes \
             and at least 8 pixels a side",
            spec.classes
        )));
    }
    let split = |per_class: usize, purpose| {
        let renderer = Renderer {
            classes: spec.classes,
            side,
            seed: spec.seed,
            purpose,
        };
        let labels = (0..spec.classes * per_class)
            .map(|i| i % spec.classes)
            .collect();
        Split::new(Source::Synthetic(renderer), labels, None)
    };
    Dataset::new(
        split(spec.train_per_class, Purpose::SyntheticTrain),
        split(spec.test_per_class, Purpose::SyntheticTest),
        (0..spec.classes).map(class_name).collect(),
        None,
    )
}

/// Draws example `index` of one split.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Renderer {
    classes: usize,
    side: usize,
    seed: u64,
    purpose: Purpose,
}

/// Where and how one image's object, distractor and background are drawn.
struct Scene {
    background: [f32; 3],
    /// Change of background brightness per pixel along a random direction.
    gradient: [f32; 2],
    object: Placement,
    colour: [f32; 3],
    distractor: Placement,
    distractor_colour: [f32; 3],
    noise: f32,
}

/// An object's centre and radius in pixels and its rotation.
struct Placement {
    cx: f32,
    cy: f32,
    radius: f32,
    cos: f32,
    sin: f32,
}

impl Placement {
    fn random(rng: &mut impl Rng, side: f32, radius: (f32, f32)) -> Placement {
        let angle = rng.random_range(0.0..2.0 * PI);
        Placement {
            cx: rng.random_range(0.3..0.7) * side,
            cy: rng.random_range(0.3..0.7) * side,
            radius: rng.random_range(radius.0..radius.1) * side,
            cos: angle.cos(),
            sin: angle.sin(),
        }
    }

    /// Pixel position -> the object's own frame, where its outline has radius 1.
    fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = ((x - self.cx) / self.radius, (y - self.cy) / self.radius);
        (self.cos * dx + self.sin * dy, self.cos * dy - self.sin * dx)
    }
}

impl Renderer {
    pub(crate) fn render(&self, index: usize) -> Image {
        let mut rng = stream(self.seed, self.purpose, &[index as u64]);
        let (shape, texture, colour) = class_look(index % self.classes);
        let side = self.side as f32;
        let scene = Scene {
            background: [(); 3].map(|_| rng.random_range(0.1..0.9)),
            gradient: [(); 2].map(|_| rng.random_range(-0.3..0.3) / side),
            object: Placement::random(&mut rng, side, (0.18, 0.32)),
            colour: COLOURS[colour].1.map(|c| {
                let shade: f32 = rng.random_range(0.75..1.0);
                (c * shade + rng.random_range(-0.06..0.06)).clamp(0.0, 1.0)
            }),
            distractor: Placement::random(&mut rng, side, (0.06, 0.12)),
            distractor_colour: [(); 3].map(|_| rng.random_range(0.0..1.0)),
            noise: rng.random_range(0.02..0.1),
        };
        let mut pixels = Vec::with_capacity(self.side * self.side * 3);
        for y in 0..self.side {
            for x in 0..self.side {
                let colour = scene.pixel(shape, texture, x as f32, y as f32);
                for c in colour {
                    let noisy = c + scene.noise * rng.random_range(-1.0f32..1.0);
                    pixels.push((noisy.clamp(0.0, 1.0) * 255.0).round() as u8);
                }
            }
        }
        Image {
            width: self.side,
            height: self.side,
            pixels,
        }
    }
}

impl Scene {
    /// Mean colour over a 2x2 grid of samples inside pixel (x, y), for smooth outlines.
    fn pixel(&self, shape: Shape, texture: Texture, x: f32, y: f32) -> [f32; 3] {
        let mut sum = [0.0f32; 3];
        for (ox, oy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
            let sample = self.sample(shape, texture, x + ox, y + oy);
            for c in 0..3 {
                sum[c] += sample[c] / 4.0;
            }
        }
        sum
    }

    fn sample(&self, shape: Shape, texture: Texture, x: f32, y: f32) -> [f32; 3] {
        let (u, v) = self.object.local(x, y);
        if inside(shape, u, v) {
            let shade = fill(texture, u, v);
            return self.colour.map(|c| c * shade);
        }
        let (du, dv) = self.distractor.local(x, y);
        if inside(Shape::Disc, du, dv) {
            return self.distractor_colour;
        }
        let shading = self.gradient[0] * x + self.gradient[1] * y;
        self.background.map(|c| c + shading)
    }
}

/// Whether the point (u, v) of the object's frame is part of the shape.
fn inside(shape: Shape, u: f32, v: f32) -> bool {
    let r2 = u * u + v * v;
    match shape {
        Shape::Disc => r2 <= 1.0,
        Shape::Square => u.abs() <= 0.8 && v.abs() <= 0.8,
        // Equilateral, vertices on the unit circle at 90, 210 and 330 degrees.
        Shape::Triangle => v >= -0.5 && 3f32.sqrt() * u.abs() <= 1.0 - v,
        Shape::Cross => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
        Shape::Ring => (0.3..=1.0).contains(&r2),
        // Four parallel bars filling a square.
        Shape::Stripes => u.abs() <= 0.9 && v.abs() <= 0.9 && (u + 0.9).rem_euclid(0.45) < 0.25,
    }
}

/// Brightness factor of the fill at (u, v): 1 on the plain parts, darker on the pattern.
fn fill(texture: Texture, u: f32, v: f32) -> f32 {
    const DARK: f32 = 0.45;
    let on_pattern = match texture {
        Texture::Solid => false,
        Texture::Checker => ((u / 0.4).floor() + (v / 0.4).floor()).rem_euclid(2.0) == 1.0,
        Texture::Hatched => (u + v).rem_euclid(0.35) < 0.14,
        Texture::Dotted => {
            let (cu, cv) = (u.rem_euclid(0.4) - 0.2, v.rem_euclid(0.4) - 0.2);
            cu * cu + cv * cv < 0.1 * 0.1
        }
    };
    if on_pattern {
        DARK
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_own_look() {
        let looks: Vec<_> = (0..MAX_CLASSES).map(class_look).collect();
        for (i, a) in looks.iter().enumerate() {
            assert!(looks[i + 1..].iter().all(|b| b != a), "class {i} repeats");
        }
        let names: std::collections::HashSet<_> = (0..MAX_CLASSES).map(class_name).collect();
        assert_eq!(names.len(), MAX_CLASSES);
        assert_eq!(class_name(0), "red-disc-solid");
    }

    #[test]
    fn shapes_cover_a_sensible_part_of_their_box() {
        // Fraction of the [-1, 1]^2 box each shape fills, measured on a fine grid.
        for shape in SHAPES {
            let n = 200;
            let hits = (0..n * n)
                .filter(|i| {
                    let u = (i % n) as f32 / n as f32 * 2.0 - 1.0;
                    let v = (i / n) as f32 / n as f32 * 2.0 - 1.0;
                    inside(shape, u, v)
                })
                .count();
            let fraction = hits as f32 / (n * n) as f32;
            assert!((0.15..0.8).contains(&fraction), "{shape:?}: {fraction}");
        }
    }
}
