//! `gendi eval`: the reference report's measurements.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{AutoguideArgs, GenerateArgs, GuidanceArgs, Guide, SamplerArg, progress};
use gendi::data::{self, DIGITS, Mnist, Split};
use gendi::native::classifier::{
    self, Classifier, CrossCheck, DigitClassifier, FEATURES, images_of,
};
use gendi::native::eval::FeatureStats;
use gendi::native::eval::SetReport;
use gendi::pipeline::{Digits, GenerationRequest};
use gendi::rng::NoiseRng;
use gendi::sampler::{Sampler, SamplerKind};
use gendi::schedule::NoiseSchedule;

#[derive(Args)]
pub struct EvalArgs {
    /// Generated images per set (unconditional, and per-digit split evenly over 0–9).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The per-digit set's guidance.
    #[command(flatten)]
    guidance: GuidanceArgs,
    /// Images per generation batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// The classifier's weights; trained (fixed seed) and saved there if missing.
    #[arg(long, default_value = "runs/classifier.bpk")]
    classifier: PathBuf,
    /// Epochs when training the classifier (and the cross-check's).
    #[arg(long, default_value_t = 5)]
    classifier_epochs: usize,
    /// A second classifier, built another way (two 5×5 convolutions with max-pooling, seed 1),
    /// that scores the same images again; its figures follow the first's, so that a score only
    /// one network gives stands out. Trained and saved there if missing.
    #[arg(long, value_name = "PATH")]
    cross_check: Option<PathBuf>,
    /// Compare samplers instead of one full report: a comma-separated list of SAMPLER[:STEPS]
    /// (e.g. `dpm-solver:10,dpm-solver:20,ddim:50`), each scored on the same seeds, one table row
    /// each with the time per image.
    #[arg(long, value_delimiter = ',', value_parser = parse_compared)]
    compare: Vec<(SamplerArg, Option<usize>)>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// MNIST directory [default: $GENDI_DATA or data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Autoguidance of the unconditional set.
    #[command(flatten)]
    autoguide: AutoguideArgs,
    #[command(flatten)]
    model: GenerateArgs,
}

pub fn run(args: EvalArgs) -> Result<(), String> {
    if args.count < 20 {
        return Err("--count must be at least 20 (10 digits × 2 for the statistics)".into());
    }
    if args.cross_check.is_some() && !args.compare.is_empty() {
        return Err("--cross-check scores one full report: leave out --compare".into());
    }
    let device = args.model.device.device.device()?;
    let dir = args.data.clone().unwrap_or_else(data::default_data_dir);
    let train = Mnist::load(&dir, Split::Train).map_err(|e| e.to_string())?;
    let test = Mnist::load(&dir, Split::Test).map_err(|e| e.to_string())?;

    let mut rng = NoiseRng::new(args.seed);
    let real_indices: Vec<usize> =
        rng.permutation(train.len())[..args.count.min(train.len())].to_vec();
    let sets = RealSets {
        train: &train,
        test: &test,
        real_indices: &real_indices,
    };
    let judge = Judge::<Classifier>::new(&args.classifier, 0, &args, &sets)?;
    let check = match &args.cross_check {
        Some(path) => Some(Judge::<CrossCheck>::new(path, 1, &args, &sets)?),
        None => None,
    };

    let (model, config, schedule) = args.model.source.load(&device)?;
    let guide = args.autoguide.load(&config, &schedule, &device)?;
    let setup = Setup {
        args: &args,
        model: &model,
        judge: &judge,
        check: check.as_ref(),
        schedule: NoiseSchedule::new(schedule),
        conditional: config.num_classes > 0,
        guide: guide.as_ref(),
        device: &device,
    };
    println!(
        "classifier test accuracy: {:.2}% (10,000 test images)",
        100.0 * judge.test_accuracy
    );
    if args.count < 1000 {
        println!(
            "({} images per set: the bar is defined at 1000; small sets inflate the Fréchet distances)",
            args.count
        );
    }
    if !args.compare.is_empty() {
        return compare(&setup);
    }

    let kind = args.model.sampler.kind(setup.schedule.objective());
    let scored = setup.evaluate(kind)?;
    // The bar is defined at 1000 samples: Fréchet distances of smaller sets are biased upwards.
    let bar_check = |ok: bool| match (ok, args.count >= 1000) {
        (true, true) => "yes",
        (false, true) => "NO",
        (true, false) => "(yes)",
        (false, false) => "(NO)",
    };
    println!(
        "sampler: {kind}, {} model evaluations per image; per-digit guidance {} at σ_t ≤ {}",
        scored.steps, args.guidance.guidance, args.guidance.guidance_sigma_max
    );
    if let Some(guide) = &guide {
        println!(
            "unconditional set {} (twice the model evaluations)",
            guide.describe()
        );
    }
    println!();
    judge.print_table(&scored.reports, bar_check);
    let cross_check = check
        .as_ref()
        .zip(scored.check.as_ref())
        .map(|(check, reports)| {
            println!();
            println!(
                "cross-check: the same images scored by {} ({:.2}% on the 10,000 test images)",
                check.path.display(),
                100.0 * check.test_accuracy
            );
            check.print_table(reports, bar_check);
            check.json(reports)
        });
    let mut report = judge.json(&scored.reports);
    report.extend(fields(serde_json::json!({
        "sampler": kind,
        "guidance": args.guidance.json(),
        "autoguidance": setup.guide.map(Guide::json),
        "seed": args.seed,
        "ms_per_image": scored.ms_per_image,
        "cross_check": cross_check,
    })));
    write_json(&args, &report.into())
}

/// The fields of a `json!({ … })` object.
fn fields(object: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match object {
        serde_json::Value::Object(fields) => fields,
        _ => unreachable!("an object literal"),
    }
}

fn write_json(args: &EvalArgs, report: &serde_json::Value) -> Result<(), String> {
    let json = serde_json::to_string_pretty(report).expect("serialisable");
    println!();
    println!("{json}");
    if let Some(path) = &args.json {
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// `SAMPLER[:STEPS]` of `--compare`.
fn parse_compared(text: &str) -> Result<(SamplerArg, Option<usize>), String> {
    use clap::ValueEnum;
    let (name, steps) = match text.split_once(':') {
        Some((name, steps)) => {
            let steps = steps
                .parse()
                .map_err(|_| format!("{steps:?} is not a step count"))?;
            (name, Some(steps))
        }
        None => (text, None),
    };
    Ok((SamplerArg::from_str(name.trim(), true)?, steps))
}

/// What every sampler is scored with: the same model, classifier, seeds and counts.
struct Setup<'a> {
    args: &'a EvalArgs,
    model: &'a gendi::model::UNet,
    judge: &'a Judge<Classifier>,
    /// `--cross-check`'s classifier, scoring the same images.
    check: Option<&'a Judge<CrossCheck>>,
    schedule: NoiseSchedule,
    conditional: bool,
    /// Steers the unconditional set (`--autoguide`).
    guide: Option<&'a Guide>,
    device: &'a burn::tensor::Device,
}

/// One sampler's scores.
struct Scored {
    /// The classifier's reports.
    reports: Reports,
    /// The same images as `--cross-check`'s classifier scores them.
    check: Option<Reports>,
    /// Model evaluations per image.
    steps: usize,
    /// Wall time per unconditional image.
    ms_per_image: f64,
}

/// One classifier's reports on a sampler's images.
struct Reports {
    unconditional: SetReport,
    /// Per-digit generation with guidance (conditional weights only).
    guided: Option<SetReport>,
}

impl Setup<'_> {
    /// `count` unconditional images and `count` per-digit ones (count/10 of each digit, guided),
    /// scored by the classifier.
    fn evaluate(&self, kind: SamplerKind) -> Result<Scored, String> {
        use gendi::native::generate_images;
        let args = self.args;
        let sampler = Sampler::new(self.schedule.clone(), kind).map_err(|e| e.to_string())?;
        let steps = sampler.total_steps();
        let per_digit = args.count / DIGITS;
        let batches = |n: usize| n.div_ceil(args.batch) * steps;
        let total_steps = batches(args.count)
            + if self.conditional {
                DIGITS * batches(per_digit)
            } else {
                0
            };
        let bar = progress(total_steps as u64, &kind.to_string());
        let started = std::time::Instant::now();
        let unconditional = generate_images(
            self.model,
            self.guide.map(Guide::autoguide).as_ref(),
            &sampler,
            &GenerationRequest::new(args.count, args.seed, Digits::Unconditional, 0.0),
            args.batch,
            self.device,
            || bar.inc(1),
        )?;
        let ms_per_image = started.elapsed().as_secs_f64() * 1000.0 / args.count as f64;
        let guided = if self.conditional {
            let mut images = Vec::new();
            let mut labels = Vec::new();
            for digit in 0..DIGITS {
                let seed = args.seed + 10_000 * (digit as u64 + 1);
                images.extend(generate_images(
                    self.model,
                    None,
                    &sampler,
                    &args.guidance.request(per_digit, seed, Digits::Only(digit)),
                    args.batch,
                    self.device,
                    || bar.inc(1),
                )?);
                labels.extend(std::iter::repeat_n(digit, per_digit));
            }
            Some((images, labels))
        } else {
            None
        };
        bar.finish_and_clear();
        Ok(Scored {
            reports: self.judge.reports(&unconditional, guided.as_ref()),
            check: self
                .check
                .map(|check| check.reports(&unconditional, guided.as_ref())),
            steps,
            ms_per_image,
        })
    }
}

/// The training and test images the judges are built on and compared with.
struct RealSets<'a> {
    train: &'a Mnist,
    test: &'a Mnist,
    /// The real training images of the floor, drawn from the seed.
    real_indices: &'a [usize],
}

/// A classifier and what the reports compare generated images with: its features of the test
/// set (the Fréchet distance's reference) and its scores of real training images (the floor).
struct Judge<M> {
    /// Where the classifier's weights are.
    path: PathBuf,
    classifier: M,
    reference: FeatureStats,
    test_accuracy: f64,
    real: SetReport,
}

impl<M: DigitClassifier> Judge<M> {
    /// Loads the classifier at `path`, or trains it (with `seed`) and saves it there.
    fn new(path: &Path, seed: u64, args: &EvalArgs, sets: &RealSets) -> Result<Self, String> {
        use gendi::native::eval::accuracy;
        let cpu = burn::tensor::Device::flex();
        let classifier: M = if path.exists() {
            classifier::load(path, &cpu)?
        } else {
            eprintln!(
                "training an evaluation classifier ({} epochs, seed {seed}) → {}",
                args.classifier_epochs,
                path.display()
            );
            let bar = progress(0, "classifier");
            let model = classifier::train(
                sets.train,
                args.classifier_epochs,
                seed,
                &cpu,
                |step, total, loss| {
                    bar.set_length(total as u64);
                    bar.set_position(step as u64);
                    bar.set_message(format!("loss {loss:.4}"));
                },
            );
            bar.finish_and_clear();
            classifier::save(&model, path)?;
            model
        };
        let all_test: Vec<usize> = (0..sets.test.len()).collect();
        let test_scores = classifier.score(&images_of(sets.test, &all_test), &cpu);
        let test_labels: Vec<usize> = sets.test.labels().iter().map(|&l| l as usize).collect();
        let test_accuracy = accuracy(&test_scores.predictions, &test_labels);
        if test_accuracy < 0.99 {
            eprintln!(
                "warning: the classifier {} scores {:.2}% on the test set, under the 99% the \
                 scores assume; delete it and train it again with more --classifier-epochs",
                path.display(),
                100.0 * test_accuracy,
            );
        }
        let reference = FeatureStats::new(&test_scores.features, FEATURES);
        let real_labels: Vec<usize> = sets
            .real_indices
            .iter()
            .map(|&i| sets.train.label(i) as usize)
            .collect();
        let real = SetReport::new(
            &classifier.score(&images_of(sets.train, sets.real_indices), &cpu),
            &reference,
            Some(&real_labels),
        );
        Ok(Self {
            path: path.to_path_buf(),
            classifier,
            reference,
            test_accuracy,
            real,
        })
    }

    /// The reports on a sampler's unconditional images and on its per-digit ones (with the
    /// digits they were asked for).
    fn reports(&self, unconditional: &[f32], guided: Option<&(Vec<f32>, Vec<usize>)>) -> Reports {
        let cpu = burn::tensor::Device::flex();
        let report = |images: &[f32], labels: Option<&[usize]>| {
            SetReport::new(
                &self.classifier.score(images, &cpu),
                &self.reference,
                labels,
            )
        };
        Reports {
            unconditional: report(unconditional, None),
            guided: guided.map(|(images, labels)| report(images, Some(labels))),
        }
    }

    /// [`print_table`] of `reports` against this classifier's floor.
    fn print_table(&self, reports: &Reports, bar: impl Fn(bool) -> &'static str) {
        print_table(
            &reports.unconditional,
            reports.guided.as_ref(),
            &self.real,
            bar,
        );
    }

    /// The JSON report's part that depends on the classifier.
    fn json(&self, reports: &Reports) -> serde_json::Map<String, serde_json::Value> {
        fields(serde_json::json!({
            "classifier_test_accuracy": self.test_accuracy,
            "generated_unconditional": reports.unconditional,
            "generated_per_digit": reports.guided,
            "real_training_images": self.real,
        }))
    }
}

/// `--compare`: one row per sampler.
fn compare(setup: &Setup) -> Result<(), String> {
    let (args, real) = (setup.args, &setup.judge.real);
    println!(
        "seed {}, {} images per set; FD = Fréchet distance of the classifier's features, \
         real floor {:.3}; time on {:?}",
        args.seed, args.count, real.frechet_distance, setup.device,
    );
    println!();
    println!(
        "{:<44} {:>6} {:>8} {:>9} {:>14} {:>13} {:>9} {:>10}",
        "sampler", "evals", "FD", "FD/floor", "confidence", "classes", "per-digit", "ms/image"
    );
    let report = |rows: &[serde_json::Value]| {
        serde_json::json!({
            "seed": args.seed,
            "count": args.count,
            "guidance": args.guidance.json(),
            "autoguidance": setup.guide.map(Guide::json),
            "real_training_images": real,
            "samplers": rows,
        })
    };
    let mut rows = Vec::new();
    for &(sampler, steps) in &args.compare {
        let kind = args.model.sampler.kind_of(sampler, steps);
        let scored = setup.evaluate(kind)?;
        let u = &scored.reports.unconditional;
        let (low, high) = u
            .class_fractions
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &f| (lo.min(f), hi.max(f)));
        let per_digit = scored
            .reports
            .guided
            .as_ref()
            .and_then(|g| g.label_accuracy)
            .map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
        println!(
            "{:<44} {:>6} {:>8.3} {:>9.2} {:>14} {:>13} {:>9} {:>10.1}",
            kind.to_string(),
            scored.steps,
            u.frechet_distance,
            u.frechet_distance / real.frechet_distance,
            format!(
                "{:.2}±{:.2}%",
                100.0 * u.mean_confidence,
                100.0 * u.confidence_standard_error
            ),
            format!("{:.1}–{:.1}%", 100.0 * low, 100.0 * high),
            per_digit,
            scored.ms_per_image,
        );
        rows.push(serde_json::json!({
            "sampler": kind,
            "model_evaluations": scored.steps,
            "ms_per_image": scored.ms_per_image,
            "generated_unconditional": scored.reports.unconditional,
            "generated_per_digit": scored.reports.guided,
        }));
        // The file so far after every row: a long comparison stopped midway keeps its rows.
        if let Some(path) = &args.json {
            let json = serde_json::to_string_pretty(&report(&rows)).expect("serialisable");
            std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    write_json(args, &report(&rows))
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
        bar(unconditional.frechet_distance <= 1.5 * real.frechet_distance),
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
        bar(unconditional.mean_confidence >= 0.98),
    );
    row(
        "KL(class histogram ‖ uniform)",
        &|r| format!("{:.4}", r.kl_from_uniform),
        "",
    );
    let balanced = unconditional
        .class_fractions
        .iter()
        .all(|&f| (0.09..=0.11).contains(&f));
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
            bar(accuracy >= 0.995),
        ]);
    }
}

#[derive(Args)]
pub struct ClassifyArgs {
    /// 28×28 PNG files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// The classifier's weights (as trained by `gendi eval`).
    #[arg(long, default_value = "runs/classifier.bpk")]
    classifier: PathBuf,
}

pub fn classify(args: ClassifyArgs) -> Result<(), String> {
    use gendi::data::normalize_to_neg_one_to_one;
    use gendi::native::images::Gray;
    let cpu = burn::tensor::Device::flex();
    let classifier: Classifier = classifier::load(&args.classifier, &cpu)?;
    for path in &args.images {
        let image = Gray::load(path)?;
        if (image.width, image.height) != (28, 28) {
            return Err(format!(
                "{}: {}×{} pixels; the classifier reads 28×28 digits",
                path.display(),
                image.width,
                image.height
            ));
        }
        let values: Vec<f32> = image
            .pixels
            .iter()
            .map(|&p| normalize_to_neg_one_to_one(p))
            .collect();
        let scores = classifier.score(&values, &cpu);
        println!(
            "{}: {} ({:.1}%)",
            path.display(),
            scores.predictions[0],
            100.0 * scores.confidences[0]
        );
    }
    Ok(())
}
