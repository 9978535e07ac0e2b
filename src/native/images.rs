//! Grayscale PNGs: single digits, grids of digits and strips (the loss chart is in `chart`).

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

    /// Reads a PNG of any colour type as 8-bit gray (the mean of R, G and B; alpha over black).
    pub fn load(path: &Path) -> Result<Gray, String> {
        let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let file = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| fail(&e))?);
        let mut decoder = png::Decoder::new(file);
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(|e| fail(&e))?;
        let (width, height) = (reader.info().width as usize, reader.info().height as usize);
        if width * height > 4096 * 4096 {
            return Err(fail(&format!(
                "{width}×{height} pixels is too large for a digit"
            )));
        }
        let mut buffer = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut buffer).map_err(|e| fail(&e))?;
        let channels = frame.color_type.samples();
        let pixels = buffer[..frame.buffer_size()]
            .chunks(channels)
            .map(|c| {
                let (color, alpha) = match c.len() {
                    1 => (c[0] as u32, 255),
                    2 => (c[0] as u32, c[1] as u32),
                    3 => ((c[0] as u32 + c[1] as u32 + c[2] as u32) / 3, 255),
                    _ => ((c[0] as u32 + c[1] as u32 + c[2] as u32) / 3, c[3] as u32),
                };
                (color * alpha / 255) as u8
            })
            .collect();
        Ok(Gray {
            width,
            height,
            pixels,
        })
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
