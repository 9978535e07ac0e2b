// Runs the WebAssembly model off the main thread: loads and verifies the weights, then streams
// one message per reverse step. The page stays responsive however slow a step is.

// Three builds of one crate: pkg/ runs WebGPU; pkg-cpu/ runs the CPU backend on one thread;
// pkg-threads/ runs it on a pool of Web Workers sharing its memory, which browsers allow only in
// a cross-origin isolated page (the COOP and COEP headers; see README). The CPU modules leave
// WebGPU out: compiled in, it made the CPU path 4-5x slower.
let wasm = null;
// Why the CPU backend runs on one thread although the page asked for more, if it does.
let threadsNote = null;

// A module's JS glue and its wasm, fetched side by side rather than one after the other.
async function importModule(dir) {
  const wasmResponse = fetch(`./${dir}/gendi_bg.wasm`);
  wasmResponse.catch(() => {}); // reported by the module's init below
  const module = await import(`./${dir}/gendi.js`);
  await module.default({ module_or_path: wasmResponse });
  return module;
}

async function loadModule(backend, threads) {
  const cores = Math.max(1, navigator.hardwareConcurrency || 1);
  const wanted = threads > 0 ? Math.min(threads, cores) : cores;
  // Isolated, the CPU backend always runs from pkg-threads/, one thread included.
  if (backend === 'cpu' && self.crossOriginIsolated === true) {
    try {
      const module = await importModule('pkg-threads');
      await module.initThreadPool(wanted);
      return module;
    } catch (e) {
      threadsNote = `The multithreaded CPU module failed to start (${e.message}), so the CPU backend runs on one thread.`;
    }
  }
  return importModule(backend === 'cpu' ? 'pkg-cpu' : 'pkg');
}

const CACHE = 'gendi-weights';
let denoiser = null;
let running = false;
let stopRequested = false;

const post = (message, transfer = []) => self.postMessage(message, transfer);

// A Rust panic aborts the module: the panic hook prints the message to console.error and the
// call throws a bare RuntimeError ("unreachable"). Keep the message to report it.
let lastPanic = null;
const consoleError = console.error.bind(console);
console.error = (...args) => { lastPanic = args.join(' '); consoleError(...args); };

function fail(error, context) {
  let message = String((error && error.message) || error);
  const crashed = error instanceof WebAssembly.RuntimeError;
  if (crashed) {
    message = `the WebAssembly module crashed${lastPanic ? `: ${lastPanic}` : ` (${message})`}. Retry to start it again`;
    denoiser = null;
  }
  post({ type: 'error', context, message, crashed });
}

async function fetchOk(url, what) {
  let response;
  try {
    response = await fetch(url, { cache: 'no-cache' });
  } catch (e) {
    throw new Error(`could not download ${what} (${url}): ${e.message}`);
  }
  if (!response.ok) throw new Error(`could not download ${what} (${url}): HTTP ${response.status} ${response.statusText}`);
  return response;
}

// Reads a response body, reporting bytes so far against the size the manifest announced.
async function readWithProgress(response, total) {
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    post({ type: 'progress', received, total });
  }
  const bytes = new Uint8Array(received);
  let offset = 0;
  for (const chunk of chunks) { bytes.set(chunk, offset); offset += chunk.length; }
  return bytes;
}

// The weights, from the Cache API when this exact file (by SHA-256) was downloaded before.
async function loadWeights(manifestUrl, info) {
  // The manifest names the weights file relative to itself.
  const url = new URL(info.file, manifestUrl).href;
  const key = `${url}?sha256=${info.sha256}`;
  const cache = self.caches ? await caches.open(CACHE).catch(() => null) : null;
  const cached = cache && await cache.match(key);
  if (cached) {
    const bytes = new Uint8Array(await cached.arrayBuffer());
    post({ type: 'progress', received: bytes.length, total: info.bytes, cached: true });
    return { bytes, fromCache: true, forget: () => cache.delete(key) };
  }
  const bytes = await readWithProgress(await fetchOk(url, 'the weights'), info.bytes);
  return {
    bytes,
    fromCache: false,
    remember: () => cache && cache.put(key, new Response(bytes.slice())).catch(() => {}),
  };
}

// The weights entry of a manifest as plain JSON, before the module can check it, so that the
// download starts while the module compiles; only a bare file name beside the manifest, a
// SHA-256 and a length qualify. Whatever is used is checked again by the module (checkManifest,
// then the weights' length and hash in Denoiser.create).
function earlyWeightsEntry(manifestText) {
  try {
    const { file, sha256, bytes } = JSON.parse(manifestText).weights;
    const plain = /^[A-Za-z0-9._-]+$/.test(file) && !file.startsWith('.') && /^[0-9a-f]{64}$/.test(sha256);
    return plain && Number.isSafeInteger(bytes) && bytes > 0 ? { file, sha256, bytes } : null;
  } catch {
    return null;
  }
}

// When each phase of loading ended (ms since the epoch: the page's clock starts elsewhere).
const now = () => performance.timeOrigin + performance.now();
const phases = { worker_started: now() };

// The manifest, then the weights it names, downloading: started by 'prefetch' as soon as the
// worker runs (every backend needs them, and the page may still be choosing one), or by 'load'.
let prefetched = null;

function download(manifestUrl) {
  const started = fetchOk(manifestUrl, 'the model manifest').then(async (response) => {
    const text = await response.text();
    const early = earlyWeightsEntry(text);
    const weights = early && loadWeights(manifestUrl, early);
    weights?.catch(() => {}); // reported by load, if these turn out to be the weights to use
    return { text, early, weights };
  });
  started.catch(() => {}); // reported by load, after any error of the module itself
  return { manifestUrl, started };
}

const manifestUrlOf = (base, weightsDir) => new URL(`${weightsDir}/manifest.json`, base).href;

function prefetch({ base, weightsDir }) {
  prefetched = download(manifestUrlOf(base, weightsDir));
}

async function load({ backend, base, weightsDir, warmBatches, threads }) {
  denoiser = null;
  const manifestUrl = manifestUrlOf(base, weightsDir);
  const { started } = prefetched?.manifestUrl === manifestUrl ? prefetched : download(manifestUrl);
  prefetched = null;
  wasm ??= await loadModule(backend, threads);
  phases.module = now();
  const { Denoiser, checkManifest, formatVersion } = wasm;
  const { text: manifestText, early, weights: earlyWeights } = await started;
  let info;
  try {
    info = checkManifest(manifestText);
  } catch (e) {
    throw new Error(`${manifestUrl}: ${e.message} (this page reads format version ${formatVersion()})`);
  }
  const same = early && ['file', 'sha256', 'bytes'].every((key) => early[key] === info[key]);
  let weights = await (same ? earlyWeights : loadWeights(manifestUrl, info));
  phases.weights = now();
  try {
    denoiser = await Denoiser.create(manifestText, weights.bytes, backend);
  } catch (e) {
    if (!weights.fromCache) throw e;
    // A cached copy that no longer verifies: forget it and download again.
    await weights.forget();
    weights = await loadWeights(manifestUrl, info);
    denoiser = await Denoiser.create(manifestText, weights.bytes, backend);
  }
  phases.model = now();
  // Stored for the next visit while the page gets going: not awaited.
  weights.remember?.();
  // On WebGPU, a step's worth of work at each batch the run will use before the page says
  // ready: shaders compile now, not during the run (the page asks for none on the CPU).
  let warmUpMs = 0;
  if (warmBatches.length > 0) post({ type: 'warming', backend: denoiser.backend });
  for (const batch of warmBatches) warmUpMs += await denoiser.warmUp(batch);
  phases.warm_up = now();
  post({
    type: 'ready', warmUpMs, phases: { ...phases }, backend: denoiser.backend, adapter: denoiser.adapter, info, fromCache: weights.fromCache,
    threads: wasm.threads(), isolated: self.crossOriginIsolated === true, threadsNote,
  });
}

// A task boundary, so that messages queued during a step are handled before the next one. Not
// setTimeout(0): chained timers are clamped to 4 ms each after the fifth.
const yielder = new MessageChannel();
function yieldToMessages() {
  return new Promise((resolve) => {
    yielder.port1.onmessage = () => resolve();
    yielder.port2.postMessage(null);
  });
}

async function generate(params) {
  if (!denoiser) throw new Error('the model is not loaded yet');
  let total;
  try {
    total = denoiser.start(params);
  } catch (e) {
    fail(e, 'start'); // the settings, not the device
    return;
  }
  running = true;
  stopRequested = false;
  post({ type: 'started', total, params });
  const begun = performance.now();
  try {
    for (;;) {
      if (stopRequested) { post({ type: 'stopped' }); return; }
      const t0 = performance.now();
      const frame = await denoiser.step();
      if (frame === null) break;
      const ms = performance.now() - t0;
      post({ type: 'frame', ...frame, ms, count: params.count }, [frame.xt.buffer, frame.x0.buffer]);
      // Let a 'stop' message in between steps.
      await yieldToMessages();
    }
    post({ type: 'done', seconds: (performance.now() - begun) / 1000 });
  } finally {
    running = false;
  }
}

// The forward process of a drawing for the noise-level slider (a preview: if a step holds the
// model just then, the page keeps its last preview).
function noised({ pixels, t, seed }) {
  let result = null;
  try { result = denoiser?.noised(pixels, t, seed); } catch (e) { /* busy or not loaded */ }
  if (result) post({ type: 'noised', t, ...result }, [result.xt.buffer]);
  else post({ type: 'noised', t, xt: new Uint8Array(28 * 28), signal: NaN, noise: NaN, snr: NaN, failed: true });
}

self.onmessage = async ({ data }) => {
  try {
    if (data.type === 'prefetch') prefetch(data);
    else if (data.type === 'load') await load(data);
    else if (data.type === 'generate') await generate(data.params);
    else if (data.type === 'stop') stopRequested = running;
    else if (data.type === 'noised') noised(data);
    else if (data.type === 'gif') {
      if (!wasm) throw new Error('the model is not loaded yet');
      const gif = wasm.encodeGif(data.frames, data.count, data.zoom, data.delayMs);
      post({ type: 'gif', gif }, [gif.buffer]);
    }
  } catch (e) {
    running = false;
    fail(e, data.type);
  }
};

self.addEventListener('unhandledrejection', (event) => { event.preventDefault(); fail(event.reason, 'worker'); });
