//! `gendi eval`: the reference report's measurements.

use std::path::PathBuf;

use clap::Args;

use super::{GenerateArgs, progress};
use gendi::data::{self, DIGITS, Mnist, Split};
use gendi::native::eval::SetReport;
use gendi::pipeline::{DEFAULT_GUIDANCE, Digits};
use gendi::rng::NoiseRng;
use gendi::sampler::Sampler;
use gendi::schedule::NoiseSchedule;

#[derive(Args)]
pub struct EvalArgs {
    /// Generated images per set (unconditional, and per-digit split evenly over 0–9).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Guidance scale for the per-digit set.
    #[arg(long, default_value_t = DEFAULT_GUIDANCE)]
    guidance: f32,
    /// Images per generation batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// The classifier's weights; trained (fixed seed) and saved there if missing.
    #[arg(long, default_value = "runs/classifier.bpk")]
    classifier: PathBuf,
    /// Epochs when training the classifier.
    #[arg(long, default_value_t = 5)]
    classifier_epochs: usize,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// MNIST directory [default: $GENDI_DATA or data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    model: GenerateArgs,
}

pub fn run(args: EvalArgs) -> Result<(), String> {
    use gendi::native::classifier::{self, FEATURES, images_of};
    use gendi::native::eval::{FeatureStats, accuracy};
    use gendi::native::generate_images;

    if args.count < 20 {
        return Err("--count must be at least 20 (10 digits × 2 for the statistics)".into());
    }
    let device = args.model.device.device.device()?;
    let dir = args.data.clone().unwrap_or_else(data::default_data_dir);
    let train = Mnist::load(&dir, Split::Train).map_err(|e| e.to_string())?;
    let test = Mnist::load(&dir, Split::Test).map_err(|e| e.to_string())?;

    let cpu = burn::tensor::Device::flex();
    let classifier = if args.classifier.exists() {
        classifier::load(&args.classifier, &cpu)?
    } else {
        eprintln!(
            "training the evaluation classifier ({} epochs, seed 0) → {}",
            args.classifier_epochs,
            args.classifier.display()
        );
        let bar = progress(0, "classifier");
        let model = classifier::train(
            &train,
            args.classifier_epochs,
            0,
            &cpu,
            |step, total, loss| {
                bar.set_length(total as u64);
                bar.set_position(step as u64);
                bar.set_message(format!("loss {loss:.4}"));
            },
        );
        bar.finish_and_clear();
        classifier::save(&model, &args.classifier)?;
        model
    };
    let all_test: Vec<usize> = (0..test.len()).collect();
    let test_scores = classifier.score(&images_of(&test, &all_test), &cpu);
    let test_labels: Vec<usize> = test.labels().iter().map(|&l| l as usize).collect();
    let test_accuracy = accuracy(&test_scores.predictions, &test_labels);
    if test_accuracy < 0.99 {
        eprintln!(
            "warning: the classifier scores {:.2}% on the test set, under the 99% the scores assume; \
             delete {} and train it again with more --classifier-epochs",
            100.0 * test_accuracy,
            args.classifier.display()
        );
    }
    let reference = FeatureStats::new(&test_scores.features, FEATURES);

    let mut rng = NoiseRng::new(args.seed);
    let real_indices: Vec<usize> =
        rng.permutation(train.len())[..args.count.min(train.len())].to_vec();
    let real_labels: Vec<usize> = real_indices
        .iter()
        .map(|&i| train.label(i) as usize)
        .collect();
    let real = SetReport::new(
        &classifier.score(&images_of(&train, &real_indices), &cpu),
        &reference,
        Some(&real_labels),
    );

    let (model, schedule, num_classes) = args.model.source.load(&device)?;
    let sampler = Sampler::new(NoiseSchedule::new(schedule), args.model.sampler.kind())
        .map_err(|e| e.to_string())?;
    let steps = sampler.timesteps().len();
    let per_digit = args.count / DIGITS;
    let batches = |n: usize| n.div_ceil(args.batch) * steps;
    let total_steps = batches(args.count)
        + if num_classes > 0 {
            DIGITS * batches(per_digit)
        } else {
            0
        };
    let bar = progress(total_steps as u64, "sampling");
    let unconditional = generate_images(
        &model,
        &sampler,
        args.count,
        args.batch,
        args.seed,
        Digits::Unconditional,
        0.0,
        &device,
        || bar.inc(1),
    )?;
    let generated = SetReport::new(&classifier.score(&unconditional, &cpu), &reference, None);
    let conditional = if num_classes > 0 {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for digit in 0..DIGITS {
            let seed = args.seed + 10_000 * (digit as u64 + 1);
            images.extend(generate_images(
                &model,
                &sampler,
                per_digit,
                args.batch,
                seed,
                Digits::Only(digit),
                args.guidance,
                &device,
                || bar.inc(1),
            )?);
            labels.extend(std::iter::repeat_n(digit, per_digit));
        }
        Some(SetReport::new(
            &classifier.score(&images, &cpu),
            &reference,
            Some(&labels),
        ))
    } else {
        None
    };
    bar.finish_and_clear();

    // The bar is defined at 1000 samples: Fréchet distances of smaller sets are biased upwards.
    let bar_check = |ok: bool| match (ok, args.count >= 1000) {
        (true, true) => "yes",
        (false, true) => "NO",
        (true, false) => "(yes)",
        (false, false) => "(NO)",
    };
    println!(
        "classifier test accuracy: {:.2}% (10,000 test images)",
        100.0 * test_accuracy
    );
    println!(
        "sampler: {:?}, {} steps; guidance {} for per-digit",
        args.model.sampler.kind(),
        steps,
        args.guidance
    );
    if args.count < 1000 {
        println!(
            "({} images per set: the bar is defined at 1000; small sets inflate the Fréchet distances)",
            args.count
        );
    }
    println!();
    print_table(&generated, conditional.as_ref(), &real, bar_check);
    let report = serde_json::json!({
        "classifier_test_accuracy": test_accuracy,
        "sampler": args.model.sampler.kind(),
        "guidance": args.guidance,
        "seed": args.seed,
        "generated_unconditional": generated,
        "generated_per_digit": conditional,
        "real_training_images": real,
    });
    let json = serde_json::to_string_pretty(&report).expect("serialisable");
    println!();
    println!("{json}");
    if let Some(path) = &args.json {
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The report as a table: one column per set, and whether the bar is met. The bar is
/// defined on the unconditional samples (confidence, class balance, Fréchet distance) and on the
/// per-digit ones (accuracy); the guided 0–9 column is what the page draws by default.
fn print_table(
    unconditional: &SetReport,
    guided: Option<&SetReport>,
    real: &SetReport,
    bar: impl Fn(bool) -> &'static str,
) {
    let line = |[name, a, b, c, ok]: [&str; 5]| {
        println!("{name:<36} {a:>14} {b:>14} {c:>14} {ok:>8}");
    };
    let row = |name: &str, value: &dyn Fn(&SetReport) -> String, ok: &str| {
        let guided = guided.map_or_else(|| "-".to_string(), value);
        line([name, &value(unconditional), &guided, &value(real), ok]);
    };
    let percent = |x: f64| format!("{:.2}%", 100.0 * x);
    line(["", "unconditional", "guided 0-9", "real (floor)", "bar met"]);
    row(
        "Fréchet distance (classifier feats)",
        &|r| format!("{:.3}", r.frechet_distance),
        bar(unconditional.frechet_distance <= 3.0 * real.frechet_distance),
    );
    row(
        "mean classifier confidence",
        &|r| {
            format!(
                "{:.2}±{:.2}%",
                100.0 * r.mean_confidence,
                100.0 * r.confidence_standard_error
            )
        },
        bar(unconditional.mean_confidence >= 0.95),
    );
    row(
        "KL(class histogram ‖ uniform)",
        &|r| format!("{:.4}", r.kl_from_uniform),
        "",
    );
    let balanced = unconditional
        .class_fractions
        .iter()
        .all(|&f| (0.08..=0.12).contains(&f));
    for digit in 0..DIGITS {
        row(
            &format!("  class {digit}"),
            &|r| format!("{:.1}%", 100.0 * r.class_fractions[digit]),
            if digit == 0 { bar(balanced) } else { "" },
        );
    }
    if let Some(guided) = guided {
        let accuracy = guided.label_accuracy.unwrap_or(0.0);
        line([
            "classified as asked (per digit)",
            "-",
            &percent(accuracy),
            &percent(real.label_accuracy.unwrap_or(0.0)),
            bar(accuracy >= 0.97),
        ]);
    }
}
