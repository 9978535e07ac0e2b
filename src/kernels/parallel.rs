//! Work spread over images: rayon's pool natively and in the page's multithreaded module (a pool
//! of Web Workers), one thread in its single-threaded module. The kernels call these two loops
//! and never rayon itself, so they read the same on every target.

/// Calls `work(scratch, index, chunk)` for each `chunk_len`-sized chunk of `out`, with a scratch
/// value made by `init` once per piece of work (not once per chunk).
pub fn for_each_chunk<S>(
    out: &mut [f32],
    chunk_len: usize,
    init: impl Fn() -> S + Send + Sync,
    work: impl Fn(&mut S, usize, &mut [f32]) + Send + Sync,
) {
    if chunk_len == 0 {
        return;
    }
    #[cfg(threads)]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk_len)
            .enumerate()
            .for_each_init(init, |scratch, (i, chunk)| work(scratch, i, chunk));
    }
    #[cfg(not(threads))]
    {
        let mut scratch = init();
        for (i, chunk) in out.chunks_mut(chunk_len).enumerate() {
            work(&mut scratch, i, chunk);
        }
    }
}

/// Like [`for_each_chunk`], with a second slice cut alongside: chunk `i` of `out` comes with
/// chunk `i` of `aux` (`aux_chunk_len` values each; the last ones may be shorter), or with an
/// empty slice when `aux` is empty.
pub fn for_each_chunk_with<S>(
    out: &mut [f32],
    chunk_len: usize,
    aux: &mut [f32],
    aux_chunk_len: usize,
    init: impl Fn() -> S + Send + Sync,
    work: impl Fn(&mut S, usize, &mut [f32], &mut [f32]) + Send + Sync,
) {
    if aux.is_empty() || aux_chunk_len == 0 {
        return for_each_chunk(out, chunk_len, init, |s, i, chunk| {
            work(s, i, chunk, &mut [])
        });
    }
    if chunk_len == 0 {
        return;
    }
    assert_eq!(
        out.len().div_ceil(chunk_len),
        aux.len().div_ceil(aux_chunk_len),
        "for_each_chunk_with: the two slices make different numbers of chunks"
    );
    #[cfg(threads)]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk_len)
            .zip(aux.par_chunks_mut(aux_chunk_len))
            .enumerate()
            .for_each_init(init, |scratch, (i, (chunk, aux))| {
                work(scratch, i, chunk, aux)
            });
    }
    #[cfg(not(threads))]
    {
        let mut scratch = init();
        let chunks = out.chunks_mut(chunk_len).zip(aux.chunks_mut(aux_chunk_len));
        for (i, (chunk, aux)) in chunks.enumerate() {
            work(&mut scratch, i, chunk, aux);
        }
    }
}

/// Like [`for_each_chunk`], and also folds an accumulator per piece of work, then merges them:
/// per-thread partial sums (e.g. a weight gradient summed over the batch).
pub fn fold_chunks<A: Send>(
    out: &mut [f32],
    chunk_len: usize,
    init: impl Fn() -> A + Send + Sync,
    work: impl Fn(&mut A, usize, &mut [f32]) + Send + Sync,
    merge: impl Fn(A, A) -> A + Send + Sync,
) -> A {
    if chunk_len == 0 {
        return init();
    }
    #[cfg(threads)]
    {
        use rayon::prelude::*;
        // One accumulator per thread: rayon would otherwise split further (and make one per
        // split), and each costs an init (a zeroed weight gradient, scratch buffers) and a merge.
        let per_thread = out.len().div_ceil(chunk_len).div_ceil(threads());
        out.par_chunks_mut(chunk_len)
            .enumerate()
            .with_min_len(per_thread)
            .fold(&init, |mut acc, (i, chunk)| {
                work(&mut acc, i, chunk);
                acc
            })
            .reduce(&init, merge)
    }
    #[cfg(not(threads))]
    {
        let _ = merge;
        let mut acc = init();
        for (i, chunk) in out.chunks_mut(chunk_len).enumerate() {
            work(&mut acc, i, chunk);
        }
        acc
    }
}

/// `work(0)` … `work(count − 1)` as tasks that the pool's threads take as they come free (one
/// after another without threads), results in task order. A single task runs here, without the
/// pool (so also on a thread that drives a GPU).
pub fn tasks<R: Send>(count: usize, work: impl Fn(usize) -> R + Send + Sync) -> Vec<R> {
    #[cfg(threads)]
    if count > 1 {
        use rayon::prelude::*;
        return (0..count)
            .into_par_iter()
            .with_max_len(1)
            .map(work)
            .collect();
    }
    (0..count).map(work).collect()
}

/// Runs `work` on one of the pool's threads and waits for it (here, without threads). A loop
/// started outside the pool is handed to it while the caller sleeps until it is done; started
/// inside, the calling thread takes its own share. A U-Net step runs dozens of such loops.
pub fn in_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    #[cfg(threads)]
    {
        rayon::scope(|_| work())
    }
    #[cfg(not(threads))]
    {
        work()
    }
}

/// `len` zeros, written by all threads if there are many: a kernel's output is allocated on the
/// calling thread while the pool waits, and large ones zeroed there alone took ~3% of a
/// training step. Small ones stay on the calling thread (handing them to the pool made batch-1
/// sampling 15–40% slower).
pub fn zeroed(len: usize) -> Vec<f32> {
    #[cfg(threads)]
    if len >= PARALLEL_ZEROS {
        use rayon::prelude::*;
        let mut values = Vec::with_capacity(len);
        values.par_extend(rayon::iter::repeat_n(0f32, len));
        return values;
    }
    vec![0f32; len]
}

/// Zeros (1 MiB of them) from which [`zeroed`] spreads the work.
#[cfg(threads)]
const PARALLEL_ZEROS: usize = 1 << 18;

/// Threads the pool runs (1 in the single-threaded wasm module).
pub fn threads() -> usize {
    #[cfg(threads)]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(threads))]
    {
        1
    }
}

/// Buffers handed back by [`Scratch`]es, for the next ones. One pool for all threads: a
/// per-thread accumulator is often dropped on another thread than the one that made it.
pub struct Pool {
    buffers: std::sync::Mutex<Vec<Vec<f32>>>,
    /// Buffers the pool keeps: more than its users hold at once on all threads.
    keeps: usize,
}

impl Pool {
    pub const fn new(keeps: usize) -> Self {
        Self {
            buffers: std::sync::Mutex::new(Vec::new()),
            keeps,
        }
    }

    fn buffers(&self) -> std::sync::MutexGuard<'_, Vec<Vec<f32>>> {
        self.buffers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The kernels' temporaries.
static SCRATCH: Pool = Pool::new(16);

/// A scratch buffer taken from a pool shared by the threads and handed back when dropped, so
/// that the kernels' large temporaries (unrolled images, products, transformed tiles) are
/// neither allocated nor zeroed on every call. Its contents are whatever the last user left:
/// callers overwrite what they read. It holds exactly the values asked for (the pooled buffer
/// behind it may be longer).
pub struct Scratch {
    buffer: Vec<f32>,
    len: usize,
    pool: &'static Pool,
}

impl Scratch {
    /// `len` values from the kernels' temporaries.
    pub fn new(len: usize) -> Self {
        Self::from_pool(&SCRATCH, len)
    }

    /// `len` values from `pool`: one of its own for what is held longer than a call
    /// (so that it does not take the temporaries' buffers away from them).
    pub fn from_pool(pool: &'static Pool, len: usize) -> Self {
        let mut buffers = pool.buffers();
        // The smallest buffer that is long enough, else the longest (grown below).
        let fits = (0..buffers.len())
            .filter(|&i| buffers[i].len() >= len)
            .min_by_key(|&i| buffers[i].len());
        let pick = fits.or_else(|| (0..buffers.len()).max_by_key(|&i| buffers[i].len()));
        let mut buffer = pick.map(|i| buffers.swap_remove(i)).unwrap_or_default();
        drop(buffers);
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        Self { buffer, len, pool }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buffer[..self.len]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buffer[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        let mut buffers = self.pool.buffers();
        buffers.push(buffer);
        if buffers.len() > self.pool.keeps
            && let Some(shortest) = (0..buffers.len()).min_by_key(|&i| buffers[i].len())
        {
            buffers.swap_remove(shortest);
        }
    }
}
