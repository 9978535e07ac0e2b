//! The commands added for the explorer and the samplers, run as a user runs them: `gendi eval
//! --compare` and `--cross-check`, `gendi classify`, `gendi sample --gif` and `--autoguide`,
//! with the shipped weights and real MNIST; and `gendi bench`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// `gendi ARGS` as the tests run it: from the crate's root, with the test MNIST.
fn gendi_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gendi"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GENDI_DATA", common::mnist_dir());
    command
}

fn gendi(args: &[&str]) -> Output {
    gendi_command(args).output().expect("gendi runs")
}

const CLASSIFIER: &str = "tests/fixtures/classifier.bpk";
const CROSS_CHECK: &str = "tests/fixtures/cross-check.bpk";

/// `gendi eval` on 20 images per set, in one batch, scored by the fixture classifier; then `args`.
fn eval(args: &[&str]) -> Output {
    let mut all = vec![
        "eval",
        "--count",
        "20",
        "--batch",
        "20",
        "--classifier",
        CLASSIFIER,
    ];
    all.extend_from_slice(args);
    gendi(&all)
}

/// [`eval`] with `--json` into `dir`, which must succeed: what it printed, and its JSON report.
fn eval_report(dir: &Path, args: &[&str]) -> (String, serde_json::Value) {
    let json = dir.join("report.json");
    let mut all = args.to_vec();
    all.extend(["--json", json.to_str().unwrap()]);
    let out = eval(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), report)
}

#[test]
fn eval_compare_scores_each_sampler_and_writes_one_json_row_each() {
    let scratch = common::scratch_dir("cli-compare");
    let (table, report) = eval_report(scratch.path(), &["--compare", "dpm-solver:2,ddim:2"]);
    assert!(table.contains("DPM-Solver++(2M) 2"), "{table}");
    assert!(table.contains("DDIM 2 (η 0)"), "{table}");
    let rows = report["samplers"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["sampler"]["kind"], "dpm-solver");
    assert_eq!(rows[1]["model_evaluations"], 2);
    assert_eq!(rows[0]["generated_unconditional"]["images"], 20);

    let bad = eval(&["--compare", "dpm-solver:x"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"x\" is not a step count"));
}

#[test]
fn eval_cross_check_scores_the_same_images_with_a_second_classifier() {
    let scratch = common::scratch_dir("cli-cross-check");
    let (table, report) = eval_report(
        scratch.path(),
        &["--steps", "2", "--cross-check", CROSS_CHECK],
    );
    assert!(
        table.contains("cross-check: the same images scored by"),
        "{table}"
    );
    let check = &report["cross_check"];
    assert!(
        check["classifier_test_accuracy"].as_f64().unwrap() > 0.99,
        "{check}"
    );
    for set in [
        "generated_unconditional",
        "generated_per_digit",
        "real_training_images",
    ] {
        assert_eq!(check[set]["images"], report[set]["images"], "{set}");
        // Another network's features: the same images, other distances.
        assert_ne!(
            check[set]["frechet_distance"], report[set]["frechet_distance"],
            "{set}"
        );
    }
    // Real digits are read as labelled by both.
    assert!(
        check["real_training_images"]["label_accuracy"]
            .as_f64()
            .unwrap()
            >= 0.95
    );

    let (_, report) = eval_report(scratch.path(), &["--steps", "2"]);
    assert!(report["cross_check"].is_null());

    let both = eval(&["--cross-check", CROSS_CHECK, "--compare", "ddim:2"]);
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("leave out --compare"));
}

#[test]
fn classify_reads_real_digits_and_refuses_other_sizes() {
    use gendi::data::{Mnist, Split};
    use gendi::native::images::Gray;
    let scratch = common::scratch_dir("cli-classify");
    let dir = scratch.path();
    let test = Mnist::load(&common::mnist_dir(), Split::Test).unwrap();
    let mut paths = Vec::new();
    for i in 0..5 {
        let path = dir.join(format!("{i}.png"));
        Gray {
            width: 28,
            height: 28,
            pixels: test.image(i).to_vec(),
        }
        .save(&path)
        .unwrap();
        paths.push(path);
    }
    let mut args = vec!["classify", "--classifier", CLASSIFIER];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let out = gendi(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for (i, line) in text.lines().enumerate() {
        let digit: u8 = line.split(": ").nth(1).unwrap()[..1].parse().unwrap();
        assert_eq!(digit, test.label(i), "{line}");
    }
    let big = dir.join("big.png");
    Gray::new(56, 28, 0).save(&big).unwrap();
    let out = gendi(&[
        "classify",
        "--classifier",
        CLASSIFIER,
        big.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("56×28"));
}

#[test]
fn sample_gif_holds_every_step_of_a_short_run() {
    let scratch = common::scratch_dir("cli-gif");
    let dir = scratch.path();
    let gif = dir.join("run.gif");
    let out = gendi(&[
        "sample",
        "--count",
        "4",
        "--seed",
        "3",
        "--steps",
        "8",
        "--out",
        dir.to_str().unwrap(),
        "--gif",
        gif.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let mut decoder = options
        .read_info(std::fs::File::open(&gif).unwrap())
        .unwrap();
    let mut frames = 0;
    let mut last = Vec::new();
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        frames += 1;
        last = frame.buffer.to_vec();
    }
    assert_eq!(frames, 8, "one frame per DPM-Solver++ step");
    // The last frame is the final digits, as in the PNGs the command wrote (top-left digit).
    let first_png = gendi::native::images::Gray::load(&dir.join("000000.png")).unwrap();
    let width = decoder.width() as usize;
    for y in 0..28 {
        for x in 0..28 {
            assert_eq!(
                last[(4 + 4 * y) * width + 4 + 4 * x],
                first_png.pixels[y * 28 + x]
            );
        }
    }
    assert!(Path::new(&dir.join("grid.png")).exists());
}

#[test]
fn sample_autoguide_takes_a_model_of_the_same_noise_only() {
    let scratch = common::scratch_dir("cli-autoguide");
    let out_dir = scratch.path().to_str().unwrap();
    let sample = |digit: &str, guide: &str| {
        gendi(&[
            "sample",
            "--count",
            "2",
            "--seed",
            "3",
            "--steps",
            "2",
            "--digit",
            digit,
            "--out",
            out_dir,
            "--autoguide",
            guide,
        ])
    };
    // Flow-matching weights: the same network, another objective.
    let refused = sample("none", "www/weights-flow");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("www/weights-flow") && stderr.contains("cannot guide this model"),
        "{stderr}"
    );
    // The model as its own guide: accepted, and said.
    let steered = sample("none", "www/weights");
    assert!(
        steered.status.success(),
        "{}",
        String::from_utf8_lossy(&steered.stderr)
    );
    assert!(
        String::from_utf8_lossy(&steered.stdout).contains("autoguided by www/weights at w = 2")
    );
    // Labelled digits have classifier-free guidance: the guide is not even loaded.
    let labelled = sample("7", "www/weights-flow");
    assert!(
        labelled.status.success(),
        "{}",
        String::from_utf8_lossy(&labelled.stderr)
    );
    assert!(!String::from_utf8_lossy(&labelled.stdout).contains("autoguided"));
}

#[test]
fn bench_reports_the_threads_its_kernels_ran_on() {
    let out = gendi_command(&[
        "bench",
        "--train-steps",
        "1",
        "--train-batch",
        "4",
        "--sample-steps",
        "1",
    ])
    .env("RAYON_NUM_THREADS", "1")
    .output()
    .expect("gendi runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench prints JSON");
    assert_eq!(report["threads"], 1, "{report}");
    assert_eq!(report["train_batch"], 4, "{report}");
    for key in [
        "train_images_per_s",
        "peak_gemm_gflops",
        "sample_ms_per_step_b1",
        "sample_ms_per_step_b16",
    ] {
        let value = report[key].as_f64().unwrap_or(f64::NAN);
        assert!(value.is_finite() && value > 0.0, "{key}: {report}");
    }
}
