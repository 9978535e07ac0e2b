//! The training-loss chart in `loss.png`: the loss against the step number with labelled axes,
//! drawn with a built-in 5×7 bitmap font so that no font file is needed.

use crate::native::images::Gray;

/// Screen pixels per font pixel.
const SCALE: usize = 2;
const GLYPH_WIDTH: usize = 5;
const GLYPH_HEIGHT: usize = 7;
/// Horizontal distance from one character to the next, in screen pixels.
const ADVANCE: usize = (GLYPH_WIDTH + 1) * SCALE;
const TEXT_HEIGHT: usize = GLYPH_HEIGHT * SCALE;

const WHITE: u8 = 255;
const GRID: u8 = 228;
pub const RAW: u8 = 175;
const INK: u8 = 0;

/// The plotting area inside the image, in pixels.
struct Frame {
    left: usize,
    top: usize,
    width: usize,
    height: usize,
}

/// The loss per step against the step number: the mean of each run of consecutive steps that
/// shares a pixel column (grey) and a moving average over a twentieth of the steps (black). The
/// loss axis is logarithmic when the values span more than a factor of 3 (a run from step 1).
/// Non-finite losses are left out.
pub fn loss_chart(steps: &[u64], losses: &[f64], width: usize, height: usize) -> Gray {
    let mut image = Gray::new(width, height, WHITE);
    let points: Vec<(f64, f64)> = steps
        .iter()
        .zip(losses)
        .filter(|(_, loss)| loss.is_finite())
        .map(|(&step, &loss)| (step as f64, loss))
        .collect();
    if points.len() < 2 {
        draw_text(&mut image, 8, 4, "no loss values yet", INK);
        return image;
    }
    let frame = Frame {
        left: 8 * ADVANCE,
        top: 3 * TEXT_HEIGHT,
        width: width.saturating_sub(8 * ADVANCE + 2 * ADVANCE).max(2),
        // Above it the title; below it the tick labels, the axis title (with descenders) and a
        // margin.
        height: height
            .saturating_sub(3 * TEXT_HEIGHT + 5 * TEXT_HEIGHT)
            .max(2),
    };

    let per_column = points.len().div_ceil(frame.width);
    let raw = column_means(&points, per_column);
    let span = (points.len() / 20).max(per_column);
    let smooth = column_means(&moving_average(&points, span), per_column);

    let lo = raw.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = raw.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let log = lo > 0.0 && hi / lo > 3.0;
    let map = |v: f64| if log { v.log10() } else { v };
    let loss_ticks = ticks_enclosing(lo, hi, log);
    let (y_lo, y_hi) = (
        map(loss_ticks[0].0),
        map(loss_ticks[loss_ticks.len() - 1].0),
    );
    let (x_lo, x_hi) = (
        points[0].0,
        points[points.len() - 1].0.max(points[0].0 + 1.0),
    );
    let bottom = frame.top + frame.height - 1;
    let to_x = |step: f64| {
        frame.left + ((step - x_lo) / (x_hi - x_lo) * (frame.width - 1) as f64).round() as usize
    };
    let to_y = |loss: f64| {
        let v = map(loss).clamp(y_lo, y_hi);
        frame.top + ((y_hi - v) / (y_hi - y_lo) * (frame.height - 1) as f64).round() as usize
    };

    for (value, label) in loss_ticks {
        let y = to_y(value);
        for x in frame.left..frame.left + frame.width {
            image.set(x, y, GRID);
        }
        let x = frame.left.saturating_sub(text_width(&label) + 8);
        draw_text(
            &mut image,
            x,
            y.saturating_sub(TEXT_HEIGHT / 2),
            &label,
            INK,
        );
    }
    for (value, label) in ticks_within(x_lo, x_hi) {
        let x = to_x(value);
        for y in bottom..bottom + 6 {
            image.set(x, y, INK);
        }
        let left = x.saturating_sub(text_width(&label) / 2);
        draw_text(&mut image, left, bottom + 10, &label, INK);
    }
    for x in frame.left..frame.left + frame.width {
        image.set(x, bottom, INK);
    }
    for y in frame.top..=bottom {
        image.set(frame.left, y, INK);
    }
    let step_label = "step";
    let centre = frame.left + frame.width / 2;
    draw_text(
        &mut image,
        centre.saturating_sub(text_width(step_label) / 2),
        bottom + 16 + TEXT_HEIGHT,
        step_label,
        INK,
    );

    polyline(
        &mut image,
        raw.iter().map(|&(s, l)| (to_x(s), to_y(l))),
        RAW,
        1,
    );
    polyline(
        &mut image,
        smooth.iter().map(|&(s, l)| (to_x(s), to_y(l))),
        INK,
        2,
    );
    let scale = if log { " (log)" } else { "" };
    let title =
        format!("loss per step{scale}  grey: {per_column}-step mean  black: {span}-step mean");
    draw_text(&mut image, 8, 4, &title, INK);
    image
}

/// Round tick values inside [`lo`, `hi`] with their labels: four to seven of them, evenly
/// spaced by 1, 2 or 5 times a power of ten.
pub fn ticks_within(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let step = round_step(lo, hi);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    evenly_spaced(first, last, step)
}

/// Tick values whose first is at or below `lo` and whose last is at or above `hi`, so that the
/// axis can run from the one to the other with labels at both ends: on a log axis spanning a
/// decade or more, 1, 2 and 5 times powers of ten; otherwise as [`ticks_within`].
pub fn ticks_enclosing(lo: f64, hi: f64, log: bool) -> Vec<(f64, String)> {
    if log && lo > 0.0 && hi / lo >= 10.0 {
        let candidates: Vec<f64> = (lo.log10().floor() as i32 - 1..=hi.log10().ceil() as i32)
            .flat_map(|decade| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(decade)))
            .collect();
        let first = candidates.iter().rposition(|&v| v <= lo * (1.0 + 1e-9));
        let last = candidates.iter().position(|&v| v >= hi * (1.0 - 1e-9));
        let (first, last) = (first.unwrap_or(0), last.unwrap_or(candidates.len() - 1));
        return candidates[first..=last]
            .iter()
            .map(|&v| (v, label(v, v)))
            .collect();
    }
    let step = round_step(lo, hi);
    let first = (lo / step + 1e-9).floor() as i64;
    let last = (hi / step - 1e-9).ceil().max(first as f64 + 1.0) as i64;
    evenly_spaced(first, last, step)
}

/// 1, 2 or 5 times a power of ten: the smallest that splits [`lo`, `hi`] into at most six parts.
fn round_step(lo: f64, hi: f64) -> f64 {
    let rough = (hi - lo).max(1e-12) / 6.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= rough * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

fn evenly_spaced(first: i64, last: i64, step: f64) -> Vec<(f64, String)> {
    (first..=last)
        .map(|i| {
            let value = i as f64 * step;
            (value, label(value, step))
        })
        .collect()
}

/// `value` with as many decimals as `resolution` needs (0.002 → 3, 500 → 0).
fn label(value: f64, resolution: f64) -> String {
    let decimals = (-(resolution.log10() + 1e-6).floor()).max(0.0) as usize;
    format!("{value:.decimals$}")
}

/// The mean point of each run of `size` consecutive points.
fn column_means(points: &[(f64, f64)], size: usize) -> Vec<(f64, f64)> {
    points
        .chunks(size.max(1))
        .map(|chunk| {
            let n = chunk.len() as f64;
            let x = chunk.iter().map(|p| p.0).sum::<f64>() / n;
            let y = chunk.iter().map(|p| p.1).sum::<f64>() / n;
            (x, y)
        })
        .collect()
}

/// Each point's value replaced by the mean over the `span` points centred on it (fewer at the
/// ends).
fn moving_average(points: &[(f64, f64)], span: usize) -> Vec<(f64, f64)> {
    let mut prefix = vec![0.0];
    for p in points {
        prefix.push(prefix[prefix.len() - 1] + p.1);
    }
    let half = span / 2;
    (0..points.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(half), (i + half + 1).min(points.len()));
            (points[i].0, (prefix[b] - prefix[a]) / (b - a) as f64)
        })
        .collect()
}

fn polyline(
    image: &mut Gray,
    points: impl Iterator<Item = (usize, usize)>,
    value: u8,
    thickness: usize,
) {
    let mut previous: Option<(usize, usize)> = None;
    for (x, y) in points {
        let (px, py) = previous.unwrap_or((x, y));
        let steps = px.abs_diff(x).max(py.abs_diff(y)).max(1);
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let ix = (px as f64 + (x as f64 - px as f64) * t).round() as usize;
            let iy = (py as f64 + (y as f64 - py as f64) * t).round() as usize;
            for dy in 0..thickness {
                image.set(ix, iy + dy, value);
            }
        }
        previous = Some((x, y));
    }
}

/// Width in pixels of `text` as [`draw_text`] draws it.
pub fn text_width(text: &str) -> usize {
    (text.chars().count() * ADVANCE).saturating_sub(SCALE)
}

/// Draws `text` with its top-left corner at (x, y). Characters without a glyph draw as '?'.
pub fn draw_text(image: &mut Gray, x: usize, y: usize, text: &str, value: u8) {
    for (i, c) in text.chars().enumerate() {
        let rows = glyph(c);
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..GLYPH_WIDTH {
                if bits & (1 << (GLYPH_WIDTH - 1 - col)) != 0 {
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            image.set(
                                x + i * ADVANCE + col * SCALE + dx,
                                y + row * SCALE + dy,
                                value,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The rows of a character, top to bottom, most significant bit leftmost: 5×7 above the
/// baseline and two more for descenders.
fn glyph(c: char) -> [u8; 9] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00, 0x00],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0x00, 0x00],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00, 0x00],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00, 0x00],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00, 0x00],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00, 0x00],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00, 0x00],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00, 0x00],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00, 0x00],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00, 0x00],
        ' ' => [0x00; 9],
        'a' => [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00, 0x00],
        'b' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00, 0x00],
        'c' => [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00],
        'e' => [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00, 0x00],
        'f' => [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00, 0x00],
        'g' => [0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'k' => [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00, 0x00],
        'l' => [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00],
        'm' => [0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11, 0x00, 0x00],
        'n' => [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00],
        'o' => [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00],
        'p' => [0x00, 0x00, 0x1E, 0x11, 0x11, 0x11, 0x1E, 0x10, 0x10],
        'r' => [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00, 0x00],
        's' => [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E, 0x00, 0x00],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00, 0x00],
        'u' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00, 0x00],
        'v' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00],
        'y' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00, 0x00],
    }
}
