//! Times Winograd's forward and backward (`gendi::kernels::winograd`) on the U-Net's own 3×3
//! convolution shapes, best of three rounds of 20 calls each, so that a change to the transforms
//! can be measured without a whole training step around it:
//!
//!   cargo run --release --example winograd_bench
//!
//! These machines are shared and noisy: build the old and the new version, run them
//! alternately, and compare the best times.

use gendi::kernels::winograd::{
    Tiling, conv3x3_backward, conv3x3_forward, conv3x3_forward_keeping, conv3x3_shape,
};
use std::time::Instant;

/// (batch, C_in, C_out, side, tiling): training's batch 64 and sampling's batch 16 at each level.
const CASES: [(usize, usize, usize, usize, Tiling); 7] = [
    (64, 32, 32, 28, Tiling::F4x4),
    (64, 96, 32, 28, Tiling::F4x4),
    (64, 160, 64, 14, Tiling::F2x2),
    (64, 64, 64, 14, Tiling::F2x2),
    (64, 96, 96, 7, Tiling::F4x4),
    (16, 32, 32, 28, Tiling::F4x4),
    (16, 96, 96, 7, Tiling::F2x2),
];
const CALLS: usize = 20;
const ROUNDS: usize = 3;

/// The best time of `ROUNDS` rounds of `CALLS` calls to `f`, in ms per call.
fn best_ms<R>(mut f: impl FnMut() -> R) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..CALLS {
                std::hint::black_box(f());
            }
            start.elapsed().as_secs_f64() * 1e3 / CALLS as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut rng = gendi::rng::NoiseRng::new(1);
    for (batch, channels_in, channels_out, side, tiling) in CASES {
        let shape = conv3x3_shape(batch, [channels_in, channels_out], [side, side]);
        let x = rng.normals(batch * channels_in * side * side);
        let weight = rng.normals(channels_out * channels_in * 9);
        let bias = rng.normals(channels_out);
        let dy = rng.normals(batch * channels_out * side * side);
        let forward = best_ms(|| conv3x3_forward(&shape, tiling, &x, &weight, &bias));
        let backward = best_ms(|| conv3x3_backward(&shape, tiling, &x, &weight, &dy, None));
        // Training's pair: the forward keeps its tiles, the backward reads them.
        let keeping = best_ms(|| conv3x3_forward_keeping(&shape, tiling, &x, &weight, &bias));
        let (_, kept) = conv3x3_forward_keeping(&shape, tiling, &x, &weight, &bias);
        let reusing = best_ms(|| conv3x3_backward(&shape, tiling, &x, &weight, &dy, Some(&kept)));
        println!(
            "b{batch} {channels_in}->{channels_out} {side}x{side} {tiling:?}: fwd {forward:.2} ms, bwd {backward:.2} ms; training's: fwd keeping {keeping:.2} ms, bwd reusing {reusing:.2} ms"
        );
    }
}
