//! `gendi sample`, `gendi forward` and `gendi reference`: images out of the model (or out of
//! the forward process).

use std::path::{Path, PathBuf};

use clap::Args;

use super::{
    AutoguideArgs, GenerateArgs, GuidanceArgs, Guide, ModelSource, ObjectiveArg, SamplerArgs,
    ScheduleArg, random_seed, schedule_config,
};
use gendi::animation;
use gendi::data::{self, DIGITS, IMAGE_PIXELS, Mnist, Split, to_pixels};
use gendi::native::images;
use gendi::pipeline::{Digits, Generation};
use gendi::rng::NoiseRng;
use gendi::sampler::Sampler;
use gendi::schedule::NoiseSchedule;

/// Parses `--digit`: a digit 0–9, `mixed` or `none`.
fn parse_digits(text: &str) -> Result<Digits, String> {
    match text {
        "mixed" => Ok(Digits::Mixed),
        "none" => Ok(Digits::Unconditional),
        _ => match text.parse::<usize>() {
            Ok(digit) if digit < DIGITS => Ok(Digits::Only(digit)),
            _ => Err(format!(
                "expected a digit 0–9, `mixed` or `none`, not {text:?}"
            )),
        },
    }
}

#[derive(Args)]
pub struct SampleArgs {
    /// Number of digits.
    #[arg(long, default_value_t = 16)]
    count: usize,
    /// Seed of the noise; the same seed gives the same digits here and on the web page.
    /// [default: random, printed]
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory: 000000.png, 000001.png, … and grid.png.
    #[arg(long, default_value = "samples")]
    out: PathBuf,
    /// Which digits: 0–9 for that digit, `mixed` for all ten evenly (both with classifier-free
    /// guidance), `none` for the unconditional model (no label, no guidance).
    /// [default: mixed, or none for unconditional weights]
    #[arg(long, value_name = "0-9|mixed|none", value_parser = parse_digits)]
    digit: Option<Digits>,
    #[command(flatten)]
    guidance: GuidanceArgs,
    #[command(flatten)]
    autoguide: AutoguideArgs,
    /// Also write the run as an animated GIF: x_t of every step (up to 100, evenly spaced beyond),
    /// in the web page's layout, 4× enlarged (at most 256 digits).
    #[arg(long, value_name = "FILE")]
    gif: Option<PathBuf>,
    /// Also write trajectory.png: x_t across the reverse process, one row per digit (up to 8).
    #[arg(long)]
    trajectory: bool,
    #[command(flatten)]
    model: GenerateArgs,
}

#[derive(Args)]
pub struct ForwardArgs {
    /// Output PNG.
    #[arg(long, default_value = "forward.png")]
    out: PathBuf,
    /// Number of real digits (rows).
    #[arg(long, default_value_t = 6)]
    count: usize,
    /// Timesteps to show (columns), 0-based.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,50,100,200,300,500,700,999"
    )]
    timesteps: Vec<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noise schedule to draw.
    #[arg(long, value_enum, default_value = "linear")]
    schedule: ScheduleArg,
    /// Forward process to draw: DDPM's (epsilon) or the flow's straight path (flow).
    #[arg(long, value_enum, default_value = "epsilon")]
    objective: ObjectiveArg,
    /// MNIST directory [default: $GENDI_DATA or data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
pub struct ReferenceArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    count: usize,
    #[arg(long, default_value_t = 1234)]
    seed: u64,
    /// Which digits: 0–9, `mixed` or `none` (as for `gendi sample`).
    #[arg(long, value_name = "0-9|mixed|none", value_parser = parse_digits, default_value = "none")]
    digit: Digits,
    #[command(flatten)]
    guidance: GuidanceArgs,
    #[command(flatten)]
    autoguide: AutoguideArgs,
    #[command(flatten)]
    sampler: SamplerArgs,
    /// How many of the first steps to record.
    #[arg(long, default_value_t = 3)]
    record: usize,
    #[command(flatten)]
    source: ModelSource,
}

pub fn sample(args: SampleArgs) -> Result<(), String> {
    if args.count == 0 || args.count > 4096 {
        return Err("--count must be between 1 and 4096".into());
    }
    let device = args.model.device.device.device()?;
    let (model, config, schedule) = args.model.source.load(&device)?;
    let num_classes = config.num_classes;
    let digits = match args.digit {
        Some(digits) => digits,
        None if num_classes == 0 => Digits::Unconditional,
        None => Digits::Mixed,
    };
    digits.check(num_classes).map_err(|e| e.to_string())?;
    let seed = args.seed.unwrap_or_else(random_seed);
    let kind = args.model.sampler.kind(schedule.objective);
    let sampler = Sampler::new(NoiseSchedule::new(schedule), kind).map_err(|e| e.to_string())?;
    let request = args.guidance.request(args.count, seed, digits);
    request.validate()?;
    let guide = match digits {
        Digits::Unconditional => args.autoguide.load(&config, &schedule, &device)?,
        _ => None,
    };
    if let Some(guide) = &guide {
        println!("{}", guide.describe());
    }
    let autoguide = guide.as_ref().map(Guide::autoguide);
    let mut generation = Generation::new(sampler, &request, &device);
    let total = generation.total_steps();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {per_sec}  [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    let shown = args.count.min(8);
    let snapshots = 10;
    let mut trajectory: Vec<Vec<u8>> = Vec::new();
    let read = |x: &burn::tensor::Tensor<4>, n: usize| -> Result<Vec<u8>, String> {
        let values: Vec<f32> = x
            .clone()
            .narrow(0, 0, n)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        Ok(to_pixels(&values))
    };
    if args.trajectory {
        trajectory.push(read(generation.sample(), shown)?);
    }
    if args.gif.is_some() && args.count > 256 {
        return Err("--gif draws at most 256 digits: lower --count".into());
    }
    let gif_steps = animation::kept_steps(total);
    let mut gif_frames = Vec::new();
    while generation
        .step_with(&model, autoguide.as_ref())
        .map_err(|e| e.to_string())?
        .is_some()
    {
        let done = generation.steps_done();
        if args.trajectory && done < total && done.is_multiple_of((total / snapshots).max(1)) {
            trajectory.push(read(generation.sample(), shown)?);
        }
        if args.gif.is_some() && gif_steps.binary_search(&(done - 1)).is_ok() {
            gif_frames.push(read(generation.sample(), args.count)?);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let pixels = read(generation.sample(), args.count)?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let save = |image: &images::Gray, path: &Path| {
        image
            .save(path)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    for (i, digit_pixels) in pixels.chunks(IMAGE_PIXELS).enumerate() {
        save(
            &images::grid(digit_pixels, 1, 1).crop_border(),
            &args.out.join(format!("{i:06}.png")),
        )?;
    }
    let columns = (args.count as f64).sqrt().ceil() as usize;
    save(
        &images::grid(&pixels, columns, 2),
        &args.out.join("grid.png"),
    )?;
    if args.trajectory {
        trajectory.push(read(generation.sample(), shown)?);
        save(&strip(&trajectory, shown), &args.out.join("trajectory.png"))?;
    }
    if let Some(path) = &args.gif {
        let bytes = animation::encode_gif(&gif_frames, args.count, 4, 100)?;
        std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {} frames to {}", gif_frames.len(), path.display());
    }
    println!(
        "wrote {} digits (seed {seed}, {} steps) to {}",
        args.count,
        total,
        args.out.display()
    );
    Ok(())
}

/// Rows = digits, columns = snapshots in time.
fn strip(snapshots: &[Vec<u8>], rows: usize) -> images::Gray {
    let mut pixels = Vec::new();
    for row in 0..rows {
        for snapshot in snapshots {
            pixels.extend_from_slice(&snapshot[row * IMAGE_PIXELS..(row + 1) * IMAGE_PIXELS]);
        }
    }
    images::grid(&pixels, snapshots.len(), 2)
}

pub fn forward(args: ForwardArgs) -> Result<(), String> {
    let dir = args.data.unwrap_or_else(data::default_data_dir);
    let mnist = Mnist::load(&dir, Split::Test).map_err(|e| e.to_string())?;
    let schedule = NoiseSchedule::new(schedule_config(args.schedule, 1000, args.objective));
    if let Some(&bad) = args.timesteps.iter().find(|&&t| t >= schedule.len()) {
        return Err(format!(
            "timestep {bad} is out of range (0..{})",
            schedule.len()
        ));
    }
    let device = burn::tensor::Device::flex();
    let mut rng = NoiseRng::new(args.seed);
    let count = args.count.clamp(1, 64);
    let mut snapshots = Vec::new();
    let indices: Vec<usize> = (0..count).collect();
    let noise = rng.normal_tensor([count, 1, data::IMAGE_SIDE, data::IMAGE_SIDE], &device);
    for &t in &args.timesteps {
        let (x0, _) = mnist.batch(&indices, &device);
        let noisy = schedule.add_noise(x0, noise.clone(), &vec![t; count]);
        let values: Vec<f32> = noisy
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        snapshots.push(to_pixels(&values));
    }
    strip(&snapshots, count)
        .save(&args.out)
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "wrote the forward process at t = {:?} to {}",
        args.timesteps,
        args.out.display()
    );
    Ok(())
}

pub fn reference(args: ReferenceArgs) -> Result<(), String> {
    let device = burn::tensor::Device::flex();
    let (model, config, schedule) = args.source.load(&device)?;
    let num_classes = config.num_classes;
    args.digit.check(num_classes).map_err(|e| e.to_string())?;
    let kind = args.sampler.kind(schedule.objective);
    let sampler = Sampler::new(NoiseSchedule::new(schedule), kind).map_err(|e| e.to_string())?;
    let timesteps = sampler.timesteps().to_vec();
    let request = args.guidance.request(args.count, args.seed, args.digit);
    request.validate()?;
    let guide = args.autoguide.load(&config, &schedule, &device)?;
    let autoguide = guide.as_ref().map(Guide::autoguide);
    let mut generation = Generation::new(sampler, &request, &device);
    let mut steps = Vec::new();
    for _ in 0..args.record.min(timesteps.len()) {
        let output = generation
            .step_with(&model, autoguide.as_ref())
            .map_err(|e| e.to_string())?
            .expect("steps remain");
        let values: Vec<f32> = output
            .prev_sample
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        steps.push(values);
    }
    let json = serde_json::json!({
        "seed": args.seed, "count": args.count, "digits": args.digit, "guidance": args.guidance.json(),
        "autoguidance": guide.as_ref().map(Guide::json),
        "sampler": kind, "total_steps": timesteps.len(), "timesteps": timesteps, "steps": steps,
    });
    std::fs::write(&args.out, json.to_string())
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "wrote {} reference steps to {}",
        steps.len(),
        args.out.display()
    );
    Ok(())
}
