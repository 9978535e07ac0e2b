//! The page's grid layout, which frames a long run keeps, and GIFs that decode to those frames.

use gendi::animation::{BACKGROUND, MAX_FRAMES, encode_gif, grid, kept_steps};

/// `count` digits whose pixels are their index + 1 (digit i is all i + 1).
fn digits(count: usize) -> Vec<u8> {
    (0..count).flat_map(|i| vec![i as u8 + 1; 784]).collect()
}

#[test]
fn the_grid_has_ceil_sqrt_columns_and_one_pixel_of_background_between_digits() {
    let picture = grid(&digits(5), 5, 1);
    // 3 columns, 2 rows of 29-px cells plus the last border.
    assert_eq!((picture.width, picture.height), (88, 59));
    let at = |x: usize, y: usize| picture.pixels[y * picture.width + x];
    assert_eq!(at(0, 0), BACKGROUND);
    assert_eq!(at(1, 1), 1, "digit 0 starts at (1, 1)");
    assert_eq!(at(28, 28), 1);
    assert_eq!(at(29, 1), BACKGROUND, "one pixel between digits");
    assert_eq!(at(30, 1), 2, "digit 1 starts at (30, 1)");
    assert_eq!(at(1, 30), 4, "digit 3 starts the second row");
    assert_eq!(at(60, 30), BACKGROUND, "no sixth digit");
    let zoomed = grid(&digits(5), 5, 4);
    assert_eq!((zoomed.width, zoomed.height), (88 * 4, 59 * 4));
    assert_eq!(zoomed.pixels[4 * zoomed.width + 4], 1);
    assert_eq!(zoomed.pixels[3 * zoomed.width + 3], BACKGROUND);
}

#[test]
fn a_long_run_keeps_evenly_spaced_frames_and_the_last() {
    assert_eq!(kept_steps(20), (0..20).collect::<Vec<_>>());
    let kept = kept_steps(1000);
    assert_eq!(kept.len(), MAX_FRAMES);
    assert_eq!(kept.last(), Some(&999));
    assert!(kept.windows(2).all(|w| w[1] - w[0] == 10));
    let odd = kept_steps(250);
    assert!(
        odd.len() <= MAX_FRAMES + 1 && odd.len() >= MAX_FRAMES - 1,
        "{}",
        odd.len()
    );
    assert_eq!(odd.last(), Some(&249));
}

#[test]
fn a_gif_decodes_to_its_frames_in_the_grid_layout() {
    let frames: Vec<Vec<u8>> = (0..3u8)
        .map(|f| digits(4).iter().map(|&v| v * 40 + f).collect())
        .collect();
    let bytes = encode_gif(&frames, 4, 2, 100).unwrap();
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let mut decoder = options.read_info(bytes.as_slice()).unwrap();
    let mut decoded = Vec::new();
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        decoded.push((frame.buffer.to_vec(), frame.delay));
    }
    assert_eq!(decoded.len(), 3);
    for (frame, (pixels, delay)) in frames.iter().zip(&decoded) {
        // The gray palette maps index v to (v, v, v): indices are the pixels.
        assert_eq!(pixels, &grid(frame, 4, 2).pixels);
        assert!(*delay == 10 || *delay == 200);
    }
    assert_eq!(decoded[2].1, 200, "the last frame holds");
}

#[test]
fn gif_inputs_that_do_not_fit_are_refused() {
    assert!(encode_gif(&[], 1, 1, 100).is_err());
    assert!(
        encode_gif(&[vec![0; 783]], 1, 1, 100)
            .unwrap_err()
            .contains("783")
    );
    assert!(
        encode_gif(&[vec![0; 784]], 1, 0, 100)
            .unwrap_err()
            .contains("zoom")
    );
    assert!(encode_gif(&[vec![0; 784]], 1, 17, 100).is_err());
}
