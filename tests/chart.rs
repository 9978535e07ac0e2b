//! The loss chart: tick choice and labels, and where the curve lands.

mod common;

use gendi::native::chart::{RAW, loss_chart, text_width, ticks_enclosing, ticks_within};

fn labels(ticks: Vec<(f64, String)>) -> Vec<String> {
    ticks.into_iter().map(|(_, label)| label).collect()
}

#[test]
fn step_ticks_are_round_numbers_inside_the_range() {
    assert_eq!(
        labels(ticks_within(7201.0, 9800.0)),
        ["7500", "8000", "8500", "9000", "9500"]
    );
    assert_eq!(
        labels(ticks_within(1.0, 100.0)),
        ["20", "40", "60", "80", "100"]
    );
}

#[test]
fn loss_ticks_enclose_the_values_evenly_or_by_decades() {
    // Within a factor of 10 the ticks are evenly spaced, even on a log axis.
    assert_eq!(
        labels(ticks_enclosing(0.0195, 0.0262, true)),
        ["0.018", "0.020", "0.022", "0.024", "0.026", "0.028"]
    );
    assert_eq!(
        labels(ticks_enclosing(0.015, 1.2, true)),
        ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2"]
    );
    // Values on a tick are enclosed by that tick, not the next one out.
    assert_eq!(
        labels(ticks_enclosing(0.02, 0.5, true)),
        ["0.02", "0.05", "0.1", "0.2", "0.5"]
    );
    assert_eq!(labels(ticks_enclosing(3.0, 3.0, false)).len(), 2);
}

/// The row of the topmost pixel of shade `value` in column `x` below the title (in the top 22
/// rows), if any.
fn top(image: &gendi::native::images::Gray, x: usize, value: u8) -> Option<usize> {
    (24..image.height).find(|&y| image.pixels[y * image.width + x] == value)
}

#[test]
fn a_falling_loss_is_drawn_high_on_the_left_and_low_on_the_right() {
    let steps: Vec<u64> = (1..=2000).collect();
    let losses: Vec<f64> = steps.iter().map(|&s| 1.0 / (s as f64).sqrt()).collect();
    let image = loss_chart(&steps, &losses, 800, 400);
    // The plotting area starts after 8 characters of tick labels (96 px) and below three rows
    // of text (42 px). The per-column means (grey) start near its top with the highest value; the moving
    // average (black) starts lower, as it averages over the first 100 steps, and falls further.
    let (left, right) = (8 * 12, 800 - 2 * 12 - 6);
    let (grey_x, grey) = (left..right)
        .filter_map(|x| Some((x, top(&image, x, RAW)?)))
        .min_by_key(|&(_, y)| y)
        .expect("a grey curve");
    assert!(
        grey_x < left + 4 && (42..100).contains(&grey),
        "grey peaks at ({grey_x}, {grey})"
    );
    let black_left = top(&image, left + 4, 0).expect("black curve on the left");
    let black_right = top(&image, right, 0).expect("black curve on the right");
    assert!(
        black_left > grey && black_right > black_left + 100,
        "black from row {black_left} to {black_right}"
    );
}

#[test]
fn labels_are_drawn_left_of_the_axis_and_nothing_breaks_without_data() {
    let steps: Vec<u64> = (100..200).collect();
    let losses: Vec<f64> = steps
        .iter()
        .map(|&s| 0.02 + (s % 7) as f64 * 1e-3)
        .collect();
    let image = loss_chart(&steps, &losses, 800, 400);
    let label_ink = (40..360)
        .flat_map(|y| (0..8 * 12 - 8).map(move |x| (x, y)))
        .filter(|&(x, y)| image.pixels[y * 800 + x] == 0)
        .count();
    assert!(
        label_ink > 50,
        "{label_ink} dark pixels in the tick-label margin"
    );
    assert_eq!(text_width("0.020"), 5 * 12 - 2);
    for (steps, losses) in [(vec![1], vec![0.5]), (vec![1, 2], vec![f64::NAN, f64::NAN])] {
        let empty = loss_chart(&steps, &losses, 800, 400);
        assert!(empty.pixels.contains(&0), "says there is nothing to draw");
    }
}

#[test]
fn a_malformed_loss_row_is_an_error_that_names_its_line() {
    let scratch = common::scratch_dir("chart");
    let dir = scratch.path();
    let path = dir.join("loss.csv");
    std::fs::write(
        &path,
        "step,loss,learning_rate,elapsed_s\n1,0.5,1e-3,0.1\n\n2,oops,1e-3,0.2\n",
    )
    .unwrap();
    let error = gendi::native::train::read_loss_csv(&path).unwrap_err();
    assert!(error.to_string().contains("line 4"), "{error}");
    std::fs::write(&path, "step,loss\n1,0.5\n\n2,0.25\n").unwrap();
    assert_eq!(
        gendi::native::train::read_loss_csv(&path).unwrap(),
        [(1, 0.5), (2, 0.25)]
    );
}

/// `gendi loss` draws two runs that continue each other as one curve: the later file wins on
/// shared steps and `--to` drops rows past the last checkpoint.
#[test]
fn gendi_loss_joins_runs_and_cuts_to_a_step_range() {
    let scratch = common::scratch_dir("loss-cli");
    let dir = scratch.path();
    let rows = |steps: std::ops::RangeInclusive<u64>, loss: f64| {
        let body: String = steps.map(|s| format!("{s},{loss},1e-3,0.0\n")).collect();
        format!("step,loss,learning_rate,elapsed_s\n{body}")
    };
    std::fs::write(dir.join("a.csv"), rows(1..=120, 0.04)).unwrap();
    std::fs::write(dir.join("b.csv"), rows(101..=250, 0.02)).unwrap();
    let out = dir.join("joined.png");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_gendi"))
        .args(["loss", "--to", "200", "--out"])
        .arg(&out)
        .arg(dir.join("a.csv"))
        .arg(dir.join("b.csv"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // 100 rows of 0.04 from a.csv, 100 of 0.02 from b.csv (101–120 replaced, 201–250 cut).
    assert!(
        stdout.contains("steps 1–200 (200 rows, mean loss 0.03000)"),
        "{stdout}"
    );
    assert!(std::fs::metadata(&out).unwrap().len() > 1000);
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_gendi"))
        .args(["loss", "--out"])
        .arg(&out)
        .arg(dir.join("missing.csv"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("missing.csv"));
}
