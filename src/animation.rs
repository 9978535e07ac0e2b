//! A run as pictures: the page's grid of digits (the layout its canvases use) and an animated
//! GIF of the stored frames, shared by the page (Save GIF) and `gendi sample --gif`.

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};

/// The gray between digits (#222, the page's canvas background).
pub const BACKGROUND: u8 = 0x22;
/// The most frames a GIF holds: every step up to it, evenly spaced ones beyond (the page keeps
/// the same).
pub const MAX_FRAMES: usize = 100;
/// The largest zoom a GIF is drawn at.
pub const MAX_ZOOM: usize = 16;

/// An 8-bit gray picture.
pub struct Grid {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// The grid's columns for `count` digits: ⌈√count⌉, as wide as tall or one column wider.
pub fn columns(count: usize) -> usize {
    (1..=count.max(1)).find(|c| c * c >= count).unwrap_or(1)
}

/// `count` digits (28 × 28 8-bit pixels each, one after another) in the page's layout: 1 px of
/// background around each, ⌈√count⌉ columns, every pixel drawn `zoom` × `zoom`. Digits missing
/// from `digits` stay background.
pub fn grid(digits: &[u8], count: usize, zoom: usize) -> Grid {
    let columns = columns(count);
    let rows = count.div_ceil(columns);
    let cell = IMAGE_SIDE + 1;
    let (width, height) = ((columns * cell + 1) * zoom, (rows * cell + 1) * zoom);
    let mut pixels = vec![BACKGROUND; width * height];
    for (i, digit) in digits.chunks_exact(IMAGE_PIXELS).take(count).enumerate() {
        let (left, top) = (1 + (i % columns) * cell, 1 + (i / columns) * cell);
        for y in 0..IMAGE_SIDE * zoom {
            let row = &mut pixels[((top * zoom) + y) * width..][..width];
            for x in 0..IMAGE_SIDE * zoom {
                row[left * zoom + x] = digit[(y / zoom) * IMAGE_SIDE + x / zoom];
            }
        }
    }
    Grid {
        width,
        height,
        pixels,
    }
}

/// The indices of the frames to keep of `steps` recorded ones: all up to [`MAX_FRAMES`], else
/// the step that crosses each of MAX_FRAMES even marks, and always the last.
pub fn kept_steps(steps: usize) -> Vec<usize> {
    let mark = |s: usize| s * MAX_FRAMES / steps;
    (1..=steps)
        .filter(|&s| steps <= MAX_FRAMES || s == steps || mark(s) != mark(s - 1))
        .map(|s| s - 1)
        .collect()
}

/// An animated GIF (looping, gray palette) of `frames`, each `count` digits of 8-bit pixels,
/// shown `delay_ms` each; the last frame holds for two seconds.
pub fn encode_gif(
    frames: &[Vec<u8>],
    count: usize,
    zoom: usize,
    delay_ms: u16,
) -> Result<Vec<u8>, String> {
    if frames.is_empty() {
        return Err("a GIF needs at least one frame".into());
    }
    if !(1..=MAX_ZOOM).contains(&zoom) {
        return Err(format!("zoom is {zoom}, allowed 1 to {MAX_ZOOM}"));
    }
    if let Some((i, frame)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| f.len() != count * IMAGE_PIXELS)
    {
        return Err(format!(
            "frame {i} has {} pixels, expected {count} digits of {IMAGE_PIXELS}",
            frame.len()
        ));
    }
    let first = grid(&frames[0], count, zoom);
    let (width, height) = (
        u16::try_from(first.width).map_err(|_| "the GIF would be too wide")?,
        u16::try_from(first.height).map_err(|_| "the GIF would be too tall")?,
    );
    let palette: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v]).collect();
    let mut bytes = Vec::new();
    {
        let mut encoder =
            gif::Encoder::new(&mut bytes, width, height, &palette).map_err(|e| e.to_string())?;
        encoder
            .set_repeat(gif::Repeat::Infinite)
            .map_err(|e| e.to_string())?;
        for (i, frame) in frames.iter().enumerate() {
            let picture = grid(frame, count, zoom);
            let mut gif_frame =
                gif::Frame::from_indexed_pixels(width, height, picture.pixels, None);
            let last = i + 1 == frames.len();
            gif_frame.delay = if last {
                200
            } else {
                delay_ms.div_ceil(10).max(2)
            };
            encoder.write_frame(&gif_frame).map_err(|e| e.to_string())?;
        }
    }
    Ok(bytes)
}
