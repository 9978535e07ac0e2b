//! Training on real MNIST: the loss falls, a killed run resumes exactly, a NaN stops cleanly.

mod common;

use burn::module::Module;
use gendi::data::{Mnist, Split};
use gendi::native::checkpoint::Checkpoint;
use gendi::native::export::{export, load_exported};
use gendi::native::train::{
    RunOptions, TrainConfig, TrainError, TrainReport, Trainer, learning_rate,
};
use gendi::pipeline::{Digits, Generation, GenerationRequest};
use gendi::sampler::{Sampler, SamplerError, SamplerKind};
use gendi::schedule::{NoiseSchedule, Objective, ScheduleConfig};
use gendi::weights::StoredDType;

fn mnist(count: usize) -> Mnist {
    let mut data = Mnist::load(&common::mnist_dir(), Split::Train).expect("MNIST loads");
    data.truncate(count);
    data
}

fn quiet(dir: &std::path::Path, checkpoint_every: u64) -> RunOptions {
    RunOptions {
        checkpoint_every,
        sample_every: 0,
        progress: false,
        ..RunOptions::new(dir)
    }
}

/// The step column of a run's loss.csv.
fn logged_steps(dir: &std::path::Path) -> Vec<String> {
    let csv = std::fs::read_to_string(dir.join("loss.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect()
}

/// 60 steps of batch 16 on 320 real digits (lr 1e-3, 5 warm-up steps) with `objective`, in a
/// fresh run directory: the report, the mean losses of the first and the last ten steps, and
/// the directory.
fn short_run(
    objective: Objective,
    name: &str,
) -> (TrainReport, f32, f32, tempfile::TempDir, std::path::PathBuf) {
    let config = TrainConfig {
        schedule: ScheduleConfig {
            objective,
            ..ScheduleConfig::default()
        },
        batch_size: 16,
        steps: 60,
        warmup_steps: 5,
        learning_rate: 1e-3,
        ..TrainConfig::default()
    };
    let (scratch, dir) = common::unmade_dir(&format!("train-{name}"), "run");
    let mut trainer = Trainer::new(config, &common::device()).unwrap();
    let report = trainer.run(&mnist(320), &quiet(&dir, 0)).unwrap();
    let mean = |xs: &[f32]| xs.iter().sum::<f32>() / xs.len() as f32;
    let (first, last) = (mean(&report.losses[..10]), mean(&report.losses[50..]));
    (report, first, last, scratch, dir)
}

#[test]
fn a_short_run_on_real_digits_lowers_the_loss() {
    let (report, first, last, _scratch, dir) = short_run(Objective::Epsilon, "loss");
    assert_eq!(report.losses.len(), 60);
    assert!(last < 0.6 * first, "loss went from {first} to {last}");
    // The run wrote its artefacts.
    assert!(dir.join("loss.png").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("loss.csv"))
            .unwrap()
            .lines()
            .count(),
        61
    );
    assert_eq!(
        Checkpoint::load(&dir.join("checkpoint.gendi"))
            .unwrap()
            .state
            .step,
        60
    );
}

#[test]
fn a_short_flow_matching_run_lowers_the_loss_and_its_weights_sample_with_heun() {
    let (_, first, last, _scratch, dir) = short_run(Objective::Flow, "flow");
    let device = common::device();
    assert!(last < 0.6 * first, "loss went from {first} to {last}");

    // The objective travels through the checkpoint and the export to the loader.
    let exported = dir.join("weights");
    let saved = Checkpoint::load(&dir.join("checkpoint.gendi")).unwrap();
    assert_eq!(saved.state.config.schedule.objective, Objective::Flow);
    export(
        std::slice::from_ref(&saved),
        &exported,
        true,
        StoredDType::F16,
    )
    .unwrap();
    let (manifest, model) = load_exported(&exported, &device).unwrap();
    assert_eq!(manifest.schedule.objective, Objective::Flow);
    let schedule = NoiseSchedule::new(manifest.schedule);
    assert!(matches!(
        Sampler::new(schedule.clone(), SamplerKind::DpmSolver { steps: 20 }),
        Err(SamplerError::WrongObjective { .. })
    ));
    let sampler = Sampler::new(schedule, SamplerKind::default_for(Objective::Flow)).unwrap();
    let request = GenerationRequest::new(2, 3, Digits::Mixed, 1.0);
    let mut generation = Generation::new(sampler, &request, &device);
    let mut evaluations = 0;
    while generation.step(&model).unwrap().is_some() {
        evaluations += 1;
    }
    assert_eq!(
        evaluations, 19,
        "Heun 10: two evaluations per step, one for the last"
    );
    let images = common::values(generation.sample().clone());
    assert!(
        images.iter().all(|v| v.is_finite()),
        "the images are finite"
    );
}

#[test]
fn a_killed_run_resumes_from_its_checkpoint_with_the_same_state() {
    let data = mnist(64);
    let config = TrainConfig {
        batch_size: 8,
        steps: 6,
        warmup_steps: 2,
        ..TrainConfig::default()
    };
    let device = common::device();

    let (_straight, straight_dir) = common::unmade_dir("train-straight", "run");
    let mut straight = Trainer::new(config.clone(), &device).unwrap();
    straight.run(&data, &quiet(&straight_dir, 0)).unwrap();

    let (_killed, killed_dir) = common::unmade_dir("train-killed", "run");
    let mut killed = Trainer::new(config, &device).unwrap();
    let options = RunOptions {
        stop_at: Some(3),
        ..quiet(&killed_dir, 3)
    };
    killed.run(&data, &options).unwrap();
    let saved = Checkpoint::load(&options.checkpoint_path()).unwrap();
    drop(killed);

    let mut resumed = Trainer::resume(&options.checkpoint_path(), &device).unwrap();
    assert_eq!(resumed.state.step, 3);
    resumed.run(&data, &quiet(&killed_dir, 0)).unwrap();

    // Control: the same resume with the optimizer state thrown away must end elsewhere, so the
    // comparison below would catch a resume that lost Adam's moments.
    let (_forgetful, forgetful_dir) = common::unmade_dir("train-forgetful", "run");
    std::fs::create_dir_all(&forgetful_dir).unwrap();
    let forgetful_checkpoint = Checkpoint {
        optimizer: Trainer::new(saved.state.config.clone(), &device)
            .unwrap()
            .checkpoint()
            .unwrap()
            .optimizer,
        ..saved
    };
    forgetful_checkpoint
        .save(&forgetful_dir.join("checkpoint.gendi"))
        .unwrap();
    let mut forgetful = Trainer::resume(&forgetful_dir.join("checkpoint.gendi"), &device).unwrap();
    forgetful.run(&data, &quiet(&forgetful_dir, 0)).unwrap();
    assert_eq!(resumed.state.step, 6);
    assert_eq!(
        resumed.state.rng, straight.state.rng,
        "the RNG continues where it stopped"
    );

    let a = straight.checkpoint().unwrap();
    let b = resumed.checkpoint().unwrap();
    let floats = |bytes: &[u8]| -> Vec<f32> {
        let model =
            gendi::weights::model_from_bytes(&a.state.config.model, bytes, &device).unwrap();
        let x = common::filled(0.2, [1, 1, 28, 28]);
        common::values(model.forward(x, &[300], &[Some(2)]))
    };
    let diff = common::max_abs_diff(&floats(&a.model), &floats(&b.model));
    assert!(
        diff < 1e-4,
        "resumed run differs from the uninterrupted one by {diff}"
    );
    let diff = common::max_abs_diff(&floats(&a.ema), &floats(&b.ema));
    assert!(diff < 1e-4, "resumed EMA differs by {diff}");
    let control = common::max_abs_diff(
        &floats(&a.model),
        &floats(&forgetful.checkpoint().unwrap().model),
    );
    assert!(
        control > 1e-3,
        "losing the optimizer state should change the result (only {control})"
    );
    // The loss log has each step once.
    assert_eq!(logged_steps(&killed_dir), ["1", "2", "3", "4", "5", "6"]);
}

#[test]
fn a_run_started_from_exported_weights_counts_on_from_their_steps() {
    let data = mnist(64);
    let config = TrainConfig {
        batch_size: 8,
        steps: 3,
        warmup_steps: 2,
        ..TrainConfig::default()
    };
    let device = common::device();
    let (_first, first_dir) = common::unmade_dir("train-init-first", "run");
    let mut first = Trainer::new(config.clone(), &device).unwrap();
    first.run(&data, &quiet(&first_dir, 0)).unwrap();
    let exported_dir = first_dir.join("weights");
    let manifest = export(
        &[first.checkpoint().unwrap()],
        &exported_dir,
        true,
        StoredDType::F32,
    )
    .unwrap();
    let (_, weights) = load_exported(&exported_dir, &device.clone().autodiff()).unwrap();

    // Asking for no more steps than the weights have is refused.
    let err = Trainer::from_exported(config.clone(), &manifest, weights.clone(), None, &device)
        .err()
        .expect("3 steps on 3-step weights is refused");
    assert!(err.to_string().contains("--steps"), "{err}");

    let longer = TrainConfig { steps: 5, ..config };
    // The objective is the weights' unless one is asked for (a fine-tune into flow matching).
    let as_flow = Trainer::from_exported(
        longer.clone(),
        &manifest,
        weights.clone(),
        Some(Objective::Flow),
        &device,
    )
    .unwrap();
    assert_eq!(manifest.schedule.objective, Objective::Epsilon);
    assert_eq!(as_flow.state.config.schedule.objective, Objective::Flow);
    let mut second =
        Trainer::from_exported(longer, &manifest, weights.clone(), None, &device).unwrap();
    assert_eq!(second.state.config.schedule.objective, Objective::Epsilon);
    assert_eq!(second.state.step, 3);
    let init = second
        .state
        .config
        .init
        .clone()
        .expect("the start is recorded");
    assert_eq!(
        (init.sha256.as_str(), init.step),
        (manifest.weights.sha256.as_str(), 3)
    );
    // The fresh optimiser warms up again from the run's first step.
    let warm = learning_rate(&second.state.config, 3);
    assert!(
        (warm - second.state.config.learning_rate / 2.0).abs() < 1e-12,
        "{warm}"
    );
    // Both the trained model and its EMA start as the exported weights.
    let x = common::filled(0.3, [1, 1, 28, 28]);
    let out = |m: &gendi::model::UNet| common::values(m.forward(x.clone(), &[500], &[Some(4)]));
    let expected = out(&weights.valid());
    assert!(common::max_abs_diff(&out(&second.ema), &expected) < 1e-6);
    assert!(common::max_abs_diff(&out(&second.model.valid()), &expected) < 1e-6);

    let (_second, second_dir) = common::unmade_dir("train-init-second", "run");
    second.run(&data, &quiet(&second_dir, 0)).unwrap();
    let saved = Checkpoint::load(&second_dir.join("checkpoint.gendi")).unwrap();
    assert_eq!(saved.state.step, 5);
    assert_eq!(saved.state.config.init, Some(init));
    assert_eq!(logged_steps(&second_dir), ["4", "5"]);
    assert!(
        common::max_abs_diff(&out(&second.ema), &expected) > 0.0,
        "training moved the EMA"
    );
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let data = mnist(32);
    let config = TrainConfig {
        batch_size: 8,
        steps: 6,
        warmup_steps: 1,
        ..TrainConfig::default()
    };
    let (_scratch, dir) = common::unmade_dir("train-nan", "run");
    let mut trainer = Trainer::new(config, &common::device()).unwrap();
    trainer
        .run(
            &data,
            &RunOptions {
                stop_at: Some(2),
                ..quiet(&dir, 1)
            },
        )
        .unwrap();
    // Then the learning rate blows up: step 3's update turns the weights to NaN.
    trainer.state.config.learning_rate = f64::INFINITY;
    let err = trainer.run(&data, &quiet(&dir, 1)).unwrap_err();
    match &err {
        TrainError::NonFinite { step, kept, .. } => {
            assert_eq!(*step, 3);
            assert_eq!(*kept, Some(2));
        }
        other => panic!("expected a non-finite loss error, got {other}"),
    }
    assert!(
        err.to_string().contains("last good checkpoint (step 2)"),
        "{err}"
    );
    let kept =
        Checkpoint::load(&dir.join("checkpoint.gendi")).expect("the last good checkpoint loads");
    assert_eq!(kept.state.step, 2);
    let model =
        gendi::weights::model_from_bytes(&kept.state.config.model, &kept.model, &common::device())
            .unwrap();
    let out = common::values(model.forward(common::filled(0.1, [1, 1, 28, 28]), &[10], &[None]));
    assert!(out.iter().all(|v| v.is_finite()));
}

#[test]
fn a_truncated_checkpoint_is_an_error_not_a_panic() {
    let data = mnist(16);
    let config = TrainConfig {
        batch_size: 8,
        steps: 1,
        ..TrainConfig::default()
    };
    let (_scratch, dir) = common::unmade_dir("train-truncated", "run");
    Trainer::new(config, &common::device())
        .unwrap()
        .run(&data, &quiet(&dir, 1))
        .unwrap();
    let path = dir.join("checkpoint.gendi");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = Trainer::resume(&path, &common::device()).err().unwrap();
    assert!(err.to_string().contains("corrupted or truncated"), "{err}");
}

#[test]
fn missing_mnist_files_say_how_to_fetch_them() {
    let err = Mnist::load(std::path::Path::new("/nonexistent/mnist"), Split::Train).unwrap_err();
    assert!(err.to_string().contains("gendi data"), "{err}");
}

#[test]
fn a_truncated_mnist_file_fails_its_checksum() {
    let (_scratch, dir) = common::unmade_dir("train-mnist-cut", "run");
    std::fs::create_dir_all(&dir).unwrap();
    let src = common::mnist_dir();
    for (name, _) in gendi::data::MNIST_FILES {
        std::fs::copy(src.join(name), dir.join(name)).unwrap();
    }
    let images = dir.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 784]).unwrap();
    let err = Mnist::load(&dir, Split::Train).unwrap_err();
    assert!(err.to_string().contains("corrupted or truncated"), "{err}");
    assert!(Mnist::load(&dir, Split::Test).is_ok());
}

#[test]
fn cosine_decay_follows_half_a_cosine_after_the_warm_up() {
    use gendi::native::train::LrDecay;
    let config = TrainConfig {
        steps: 1100,
        warmup_steps: 100,
        learning_rate: 1e-3,
        lr_decay: LrDecay::Cosine {
            final_fraction: 0.1,
        },
        ..TrainConfig::default()
    };
    let lr = |step| learning_rate(&config, step);
    assert!((lr(49) - 0.5e-3).abs() < 1e-12, "half way up the warm-up");
    assert!((lr(100) - 1e-3).abs() < 1e-12, "the peak after the warm-up");
    // Half way through the decay: 0.1 + 0.9 · (1 + cos(π/2))/2 = 0.55 of the peak.
    assert!((lr(600) - 0.55e-3).abs() < 1e-12, "{}", lr(600));
    assert!(
        (lr(1100) - 0.1e-3).abs() < 1e-12,
        "the final fraction at the end"
    );
    assert!(lr(800) < lr(700), "decreasing");
}

/// Every float parameter of `model`, flattened in visiting order.
fn parameters(model: &gendi::model::UNet) -> Vec<f32> {
    struct All(Vec<f32>);
    impl burn::module::ModuleVisitor for All {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            self.0
                .extend(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut all = All(Vec::new());
    model.visit(&mut all);
    all.0
}

#[test]
fn checkpoints_of_one_run_export_as_the_mean_of_their_weights() {
    let device = common::device();
    // Two networks from different seeds stand for one run's checkpoints at two steps.
    let checkpoint = |seed, step, model| {
        let config = TrainConfig {
            model,
            batch_size: 2,
            seed,
            ..TrainConfig::default()
        };
        let mut checkpoint = Trainer::new(config, &device).unwrap().checkpoint().unwrap();
        checkpoint.state.step = step;
        checkpoint
    };
    let tiny = gendi::model::UNetConfig::tiny;
    let (a, b) = (checkpoint(1, 300, tiny()), checkpoint(2, 100, tiny()));
    let ema = |c: &Checkpoint| {
        parameters(
            &gendi::weights::model_from_bytes(&c.state.config.model, &c.ema, &device).unwrap(),
        )
    };
    let (pa, pb) = (ema(&a), ema(&b));
    assert!(common::max_abs_diff(&pa, &pb) > 1e-3, "the two differ");

    let scratch = common::scratch_dir("export-mean");
    let out = scratch.path().join("mean");
    let manifest = export(&[a, b], &out, true, StoredDType::F32).unwrap();
    assert_eq!(manifest.training_steps, 300, "the latest step is named");
    let (_, model) = load_exported(&out, &device).unwrap();
    let expected: Vec<f32> = pa.iter().zip(&pb).map(|(x, y)| (x + y) / 2.0).collect();
    let diff = common::max_abs_diff(&parameters(&model), &expected);
    assert!(diff < 1e-6, "the export is not the mean: off by {diff}");

    // One checkpoint twice is that checkpoint, to the bit.
    let once = scratch.path().join("once");
    let twice = scratch.path().join("twice");
    let c = checkpoint(1, 300, tiny());
    let single = export(std::slice::from_ref(&c), &once, true, StoredDType::F32).unwrap();
    let double = export(
        &[c, checkpoint(1, 300, tiny())],
        &twice,
        true,
        StoredDType::F32,
    )
    .unwrap();
    assert_eq!(single.weights.sha256, double.weights.sha256);

    // Checkpoints of different networks are refused, and nothing is written.
    let mixed = scratch.path().join("mixed");
    let err = export(
        &[
            checkpoint(1, 300, tiny()),
            checkpoint(1, 200, Default::default()),
        ],
        &mixed,
        true,
        StoredDType::F32,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("only checkpoints of one run"),
        "{err}"
    );
    assert!(!mixed.exists());
}

/// With several threads a CPU training step cuts its batch in two shards that run at once (see
/// `shards_for`); their gradients add up to the whole batch's. Three steps on two threads end
/// where three steps on one thread (one shard) do, up to float rounding, and a run on other
/// digits ends far from both.
#[test]
fn a_batch_in_two_shards_trains_like_the_whole_batch() {
    let data = mnist(96);
    let config = TrainConfig {
        batch_size: 16,
        steps: 3,
        warmup_steps: 1,
        learning_rate: 1e-3,
        ..TrainConfig::default()
    };
    let device = common::device();
    let outputs_after = |threads: usize, first: usize| -> (Vec<f32>, Vec<f32>) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            assert_eq!(gendi::kernels::threads(), threads);
            let mut trainer = Trainer::new(config.clone(), &device).unwrap();
            let losses = (0..3)
                .map(|step| {
                    let start = first + 16 * step;
                    trainer.train_step(&data, &(start..start + 16).collect::<Vec<_>>())
                })
                .collect();
            let x = common::filled(0.2, [1, 1, 28, 28]);
            let outputs = trainer.model.valid().forward(x, &[300], &[Some(2)]);
            (losses, common::values(outputs))
        })
    };
    let (whole_losses, whole) = outputs_after(1, 0);
    let (sharded_losses, sharded) = outputs_after(2, 0);
    for (a, b) in whole_losses.iter().zip(&sharded_losses) {
        assert!(
            a.is_finite() && (a - b).abs() <= 1e-5 * a.abs(),
            "losses {whole_losses:?} against {sharded_losses:?}"
        );
    }
    let diff = common::max_abs_diff(&whole, &sharded);
    assert!(
        diff < 1e-4,
        "two shards differ from the whole batch by {diff}"
    );
    let (_, other) = outputs_after(1, 48);
    let control = common::max_abs_diff(&whole, &other);
    assert!(
        control > 1e-2,
        "other digits should train elsewhere (only {control})"
    );
}
