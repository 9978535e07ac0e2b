//! The transformed weights U = G g Gᵀ of recent 3×3 convolutions, kept between calls. While a
//! network samples, its weights are the same at every step, and transforming them again took
//! about a tenth of a batch-1 step in wasm (`transformed_weights` and its transpose in a profile).
//!
//! An entry is looked up by the weights' address and tiling, and used only if the weights are
//! still, bit for bit, those it was made from: a buffer freed and reused for other weights, or
//! weights an optimiser updated in place, miss and are transformed again. So a cached U is always
//! the U of the weights passed in. The cache holds at most [`CAPACITY_FLOATS`]; the least
//! recently used entries go first.

use std::sync::{Arc, Mutex};

/// Weights and transformed weights together, in f32s: 24 M (96 MB), room for every 3×3
/// convolution of GENDI's U-Net (about 2 M weights, 8 M transformed) several times over.
const CAPACITY_FLOATS: usize = 24 << 20;

struct Entry {
    address: usize,
    tiling: usize,
    weights: Vec<f32>,
    transformed: Arc<Vec<f32>>,
}

impl Entry {
    fn floats(&self) -> usize {
        self.weights.len() + self.transformed.len()
    }
}

/// Most recently used last.
static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The transformed weights of `weights` for the tiling with output tiles of side `tiling`: from
/// the cache when these exact weights were transformed before, else `transform(weights)`, kept.
pub(super) fn transformed(
    weights: &[f32],
    tiling: usize,
    transform: impl FnOnce(&[f32]) -> Vec<f32>,
) -> Arc<Vec<f32>> {
    let address = weights.as_ptr() as usize;
    {
        let mut cache = CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let found = cache
            .iter()
            .position(|e| e.address == address && e.tiling == tiling);
        if let Some(i) = found {
            let entry = cache.remove(i);
            if same_bits(&entry.weights, weights) {
                let transformed = Arc::clone(&entry.transformed);
                cache.push(entry);
                return transformed;
            }
        }
    }
    let transformed = Arc::new(transform(weights));
    let entry = Entry {
        address,
        tiling,
        weights: weights.to_vec(),
        transformed: Arc::clone(&transformed),
    };
    if entry.floats() <= CAPACITY_FLOATS {
        let mut cache = CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.retain(|e| !(e.address == address && e.tiling == tiling));
        let mut held: usize = cache.iter().map(Entry::floats).sum::<usize>() + entry.floats();
        let mut evicted = 0;
        while held > CAPACITY_FLOATS {
            held -= cache[evicted].floats();
            evicted += 1;
        }
        cache.drain(..evicted);
        cache.push(entry);
    }
    transformed
}

/// Equal bit for bit (so -0.0 is not 0.0, and a NaN can match itself). By blocks of XORs ORed
/// together, which vectorise; not `memcmp`, which in wasm compares byte by byte and took longer
/// than the transform it saved.
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    const BLOCK: usize = 256;
    let (a, b) = (
        bytemuck::cast_slice::<f32, u32>(a),
        bytemuck::cast_slice::<f32, u32>(b),
    );
    a.len() == b.len()
        && a.chunks(BLOCK)
            .zip(b.chunks(BLOCK))
            .all(|(x, y)| x.iter().zip(y).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twice(w: &[f32]) -> Vec<f32> {
        w.iter().map(|v| 2.0 * v).collect()
    }

    #[test]
    fn a_hit_needs_the_same_weights_at_the_same_address() {
        let mut weights = vec![1.0f32, -2.0, 3.0];
        let calls = std::cell::Cell::new(0);
        let counted = |w: &[f32]| {
            calls.set(calls.get() + 1);
            twice(w)
        };
        assert_eq!(*transformed(&weights, 4, counted), vec![2.0, -4.0, 6.0]);
        assert_eq!(*transformed(&weights, 4, counted), vec![2.0, -4.0, 6.0]);
        assert_eq!(calls.get(), 1, "the second call is served from the cache");
        // Updated in place, as an optimiser would: transformed again.
        weights[1] = 5.0;
        assert_eq!(*transformed(&weights, 4, counted), vec![2.0, 10.0, 6.0]);
        assert_eq!(calls.get(), 2);
        // The other tiling has its own entry.
        assert_eq!(*transformed(&weights, 2, counted), vec![2.0, 10.0, 6.0]);
        assert_eq!(calls.get(), 3);
        // A sign of zero is a change too.
        weights[0] = 0.0;
        transformed(&weights, 4, counted);
        weights[0] = -0.0;
        assert_eq!(
            transformed(&weights, 4, counted)[0].to_bits(),
            (-0.0f32).to_bits()
        );
        assert_eq!(calls.get(), 5);
    }
}
