//! Grayscale PNGs: single digits, grids of digits, strips, and a loss-curve plot.

use std::path::Path;

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};

/// An 8-bit grayscale raster.
pub struct Gray {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Gray {
    pub fn new(width: usize, height: usize, fill: u8) -> Self {
        Self {
            width,
            height,
            pixels: vec![fill; width * height],
        }
    }

    pub fn set(&mut self, x: usize, y: usize, value: u8) {
        if x < self.width && y < self.height {
            self.pixels[y * self.width + x] = value;
        }
    }

    /// Copies a `side`×`side` tile with its top-left corner at (x, y).
    pub fn blit(&mut self, x: usize, y: usize, side: usize, tile: &[u8]) {
        for row in 0..side {
            for col in 0..side {
                self.set(x + col, y + row, tile[row * side + col]);
            }
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut encoder = png::Encoder::new(file, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&self.pixels)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    }
}

/// Lays out 28×28 digits (pixels concatenated) in rows of `columns`, 2 px apart, scaled by `zoom`.
pub fn grid(digits: &[u8], columns: usize, zoom: usize) -> Gray {
    let count = digits.len() / IMAGE_PIXELS;
    let columns = columns.clamp(1, count.max(1));
    let rows = count.div_ceil(columns);
    let cell = IMAGE_SIDE * zoom + 2;
    let mut image = Gray::new(columns * cell + 2, rows * cell + 2, 64);
    for (i, digit) in digits.chunks(IMAGE_PIXELS).enumerate() {
        let (x0, y0) = ((i % columns) * cell + 2, (i / columns) * cell + 2);
        for y in 0..IMAGE_SIDE * zoom {
            for x in 0..IMAGE_SIDE * zoom {
                image.set(x0 + x, y0 + y, digit[(y / zoom) * IMAGE_SIDE + x / zoom]);
            }
        }
    }
    image
}

/// A line plot of `values` (log scale when all are positive), with light horizontal grid lines
/// at each power of ten. No text: the numbers are in the CSV next to it.
pub fn plot(values: &[f64], width: usize, height: usize) -> Gray {
    let mut image = Gray::new(width, height, 255);
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.len() < 2 {
        return image;
    }
    let log = finite.iter().all(|&v| v > 0.0);
    let map = |v: f64| if log { v.log10() } else { v };
    let lo = finite.iter().map(|&v| map(v)).fold(f64::INFINITY, f64::min);
    let hi = finite
        .iter()
        .map(|&v| map(v))
        .fold(f64::NEG_INFINITY, f64::max);
    let span = (hi - lo).max(1e-12);
    let margin = 8;
    let (plot_w, plot_h) = (width - 2 * margin, height - 2 * margin);
    let y_of = |v: f64| margin + ((hi - v) / span * (plot_h - 1) as f64).round() as usize;
    if log {
        for decade in (lo.floor() as i64)..=(hi.ceil() as i64) {
            let d = decade as f64;
            if (lo..=hi).contains(&d) {
                let y = y_of(d);
                for x in margin..width - margin {
                    image.set(x, y, 210);
                }
            }
        }
    }
    for x in margin..width - margin {
        image.set(x, height - margin, 0);
    }
    for y in margin..=height - margin {
        image.set(margin, y, 0);
    }
    let n = finite.len();
    let mut previous: Option<(usize, usize)> = None;
    for (i, &v) in finite.iter().enumerate() {
        let x = margin + i * (plot_w - 1) / (n - 1);
        let y = y_of(map(v));
        if let Some((px, py)) = previous {
            let steps = px.abs_diff(x).max(py.abs_diff(y)).max(1);
            for s in 0..=steps {
                let ix = px as f64 + (x as f64 - px as f64) * s as f64 / steps as f64;
                let iy = py as f64 + (y as f64 - py as f64) * s as f64 / steps as f64;
                image.set(ix.round() as usize, iy.round() as usize, 0);
            }
        }
        previous = Some((x, y));
    }
    image
}

impl Gray {
    /// Drops the 2-px frame that [`grid`] draws around a single tile.
    pub fn crop_border(&self) -> Gray {
        let (width, height) = (self.width - 4, self.height - 4);
        let mut out = Gray::new(width, height, 0);
        for y in 0..height {
            for x in 0..width {
                out.pixels[y * width + x] = self.pixels[(y + 2) * self.width + x + 2];
            }
        }
        out
    }
}
