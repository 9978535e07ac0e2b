//! Faults a training run must survive: killed with SIGKILL at random moments (checkpoint writes
//! included), many times in a row, and resumed each time; and a disk too full for a checkpoint.

mod common;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gendi::native::checkpoint::Checkpoint;
use gendi::rng::NoiseRng;

const STEPS: u64 = 300;
const CHECKPOINT_EVERY: u64 = 5;

/// `gendi train` on a small network, resuming when the run directory holds a checkpoint.
fn train(dir: &Path, steps: u64) -> Command {
    train_checkpointing(dir, steps, CHECKPOINT_EVERY)
}

fn train_checkpointing(dir: &Path, steps: u64, checkpoint_every: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gendi"));
    command.args(["train", "--run-dir"]).arg(dir).args([
        "--steps",
        &steps.to_string(),
        "--batch-size",
        "4",
        "--base-channels",
        "8",
        "--limit",
        "256",
        "--checkpoint-every",
        &checkpoint_every.to_string(),
        "--sample-every",
        "0",
        "--quiet",
    ]);
    command.arg("--data").arg(common::mnist_dir());
    if dir.join("checkpoint.gendi").exists() {
        command.arg("--resume");
    } else {
        command.arg("--fresh");
    }
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

/// The step column of the run's loss.csv.
fn logged_steps(dir: &Path) -> Vec<u64> {
    let csv = std::fs::read_to_string(dir.join("loss.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// The child's exit status if it ends within `time`, else `None` (it keeps running).
fn wait_within(child: &mut Child, time: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + time;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn checkpoint_step(dir: &Path) -> u64 {
    match Checkpoint::load(&dir.join("checkpoint.gendi")) {
        Ok(checkpoint) => checkpoint.state.step,
        Err(e) if !dir.join("checkpoint.gendi").exists() => {
            let _ = e;
            0
        }
        Err(e) => panic!("the checkpoint does not load after a kill: {e}"),
    }
}

#[test]
fn a_run_killed_again_and_again_resumes_to_the_end_with_every_step_logged_once() {
    let (_scratch, dir) = common::unmade_dir("faults-sigkill", "run");
    let mut rng = NoiseRng::new(2026);
    let mut kills = 0;
    // Kills that found no new checkpoint in a row: each widens the next window by a second, so a
    // slow (shared, loaded) machine still makes progress.
    let mut stalled = 0u64;
    let started = Instant::now();
    loop {
        let before = checkpoint_step(&dir);
        let mut child = train(&dir, STEPS).spawn().expect("gendi runs");
        // Kill at a random moment: during start-up, a step, or a checkpoint write.
        let window = 150 + rng.below(900) as u64 + 1000 * stalled;
        match wait_within(&mut child, Duration::from_millis(window)) {
            Some(status) => {
                let output = child.wait_with_output().unwrap();
                assert!(
                    status.success(),
                    "gendi train failed after {kills} kills: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
        let after = checkpoint_step(&dir);
        stalled = if after > before { 0 } else { stalled + 1 };
        assert!(
            after >= before,
            "a kill lost a checkpoint: {before} -> {after}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no progress after {kills} kills (checkpoint at step {after})"
        );
    }
    assert!(
        kills >= 10,
        "the run finished before it could be killed often ({kills} kills)"
    );
    assert_eq!(checkpoint_step(&dir), STEPS);
    assert_eq!(
        logged_steps(&dir),
        (1..=STEPS).collect::<Vec<_>>(),
        "loss.csv after {kills} kills"
    );
    eprintln!("killed {kills} times; finished at step {STEPS}");
}

/// How a test stops a running `gendi train`.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// One signal to the process, 4 s in.
    Signal(libc::c_int),
    /// SIGTERM twice, 10 ms apart: what the process sees of `timeout` when its handler runs
    /// between the two (they coalesce into one when it does not).
    TermTwice,
    /// `timeout -s TERM 4 gendi train …`, which signals the process and then its process group:
    /// two SIGTERMs at once, which are one request to stop, not a second Ctrl-C.
    Timeout,
}

/// Ctrl-C (SIGINT), SIGTERM, two SIGTERMs 10 ms apart, then coreutils' `timeout`, each on the
/// resumed run: each ends the run after the step in progress with a checkpoint of that step (none
/// was due: they are 1000 steps apart), exits 130 with a hint to resume, and the resumed run goes
/// on from exactly there.
#[test]
fn ctrl_c_sigterm_and_timeout_stop_the_run_with_a_checkpoint_of_its_last_step() {
    let (_scratch, dir) = common::unmade_dir("faults-signals", "run");
    let mut last = 0;
    for stop in [
        Stop::Signal(libc::SIGINT),
        Stop::Signal(libc::SIGTERM),
        Stop::TermTwice,
        Stop::Timeout,
    ] {
        let mut train = train_checkpointing(&dir, 1_000_000, 1000);
        let mut child = match stop {
            Stop::Signal(_) | Stop::TermTwice => {
                let child = train.spawn().expect("gendi runs");
                // Start-up (MNIST, the network) then some steps of a few milliseconds each.
                std::thread::sleep(Duration::from_secs(4));
                let signal = |signal| {
                    // SAFETY: kill(2) on our own child's pid.
                    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
                };
                if let Stop::Signal(number) = stop {
                    signal(number);
                } else {
                    signal(libc::SIGTERM);
                    std::thread::sleep(Duration::from_millis(10));
                    signal(libc::SIGTERM);
                }
                child
            }
            Stop::Timeout => {
                let mut command = Command::new("timeout");
                command.args(["--preserve-status", "-s", "TERM", "4"]);
                command.arg(train.get_program()).args(train.get_args());
                command.stdout(Stdio::null()).stderr(Stdio::piped());
                command.spawn().expect("timeout(1) runs")
            }
        };
        if wait_within(&mut child, Duration::from_secs(60)).is_none() {
            child.kill().unwrap();
            panic!("gendi train still runs 60 s after {stop:?}");
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(130), "{stop:?}: {stderr}");
        assert!(
            stderr.contains("stopped: steps") && stderr.contains("--resume"),
            "{stop:?}: {stderr}"
        );
        let step = checkpoint_step(&dir);
        assert!(step > last, "no step after {stop:?}: {stderr}");
        assert_eq!(
            logged_steps(&dir),
            (1..=step).collect::<Vec<_>>(),
            "loss.csv after {stop:?}"
        );
        last = step;
    }
}

#[test]
fn a_full_disk_at_a_checkpoint_is_a_clear_error_and_the_last_checkpoint_still_loads() {
    let (_scratch, dir) = common::unmade_dir("faults-full", "run");
    let status = train(&dir, STEPS).status().unwrap();
    assert!(status.success());
    assert_eq!(checkpoint_step(&dir), STEPS);
    // The checkpoint is written to checkpoint.tmp, then renamed: point that at /dev/full, where
    // every write fails with ENOSPC, as on a full disk.
    let tmp = dir.join("checkpoint.tmp");
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let output = train(&dir, STEPS + 2 * CHECKPOINT_EVERY).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a failed checkpoint was not an error"
    );
    assert!(
        stderr.contains("No space left on device") && stderr.contains("previous checkpoint"),
        "the error does not say what failed: {stderr}"
    );
    assert_eq!(
        checkpoint_step(&dir),
        STEPS,
        "the last good checkpoint no longer loads"
    );
    // With space again, the run goes on from that checkpoint, every step logged once.
    std::fs::remove_file(&tmp).unwrap();
    let output = train(&dir, STEPS + 2 * CHECKPOINT_EVERY).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let end = STEPS + 2 * CHECKPOINT_EVERY;
    assert_eq!(checkpoint_step(&dir), end);
    assert_eq!(logged_steps(&dir), (1..=end).collect::<Vec<_>>());
}
