// The page: controls, the worker that runs the model, and the canvases every step is drawn to.
import { createPad } from './pad.js';

const $ = (id) => document.getElementById(id);
const SIDE = 28;
const params = new URLSearchParams(location.search);

const ui = {
  backend: $('backend'), count: $('count'), digit: $('digit'), guidance: $('guidance'), interval: $('interval'),
  sampler: $('sampler'), steps: $('steps'), seed: $('seed'), start: $('start'), stop: $('stop'),
};

// State visible to people reading the DOM and to the browser tests.
const gendi = (window.gendi = { state: 'loading', backend: null, adapter: null, framesDrawn: 0, lastFrame: null, error: null });

function setState(state) {
  gendi.state = state;
  document.body.dataset.state = state;
  ui.start.disabled = state !== 'ready';
  ui.stop.disabled = state !== 'running';
  ui.backend.disabled = state === 'running' || state === 'loading';
  syncDenoise();
}

function showError(message, actions = []) {
  gendi.error = message;
  $('error-text').textContent = message;
  const box = $('error-actions');
  box.replaceChildren(...actions.map(([label, onClick]) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = label;
    button.addEventListener('click', () => { $('error').hidden = true; onClick(); });
    return button;
  }));
  $('error').hidden = false;
  $('loading').hidden = true;
  document.body.dataset.error = 'true';
}

function clearError() {
  gendi.error = null;
  $('error').hidden = true;
  delete document.body.dataset.error;
}

function notice(message) {
  $('notice').textContent = message;
  $('notice').hidden = !message;
}

// Adds a sentence to the notice shown, if any.
function addNotice(message) {
  notice([$('notice').hidden ? '' : $('notice').textContent, message].filter(Boolean).join(' '));
}

window.addEventListener('error', (event) => showError(`Unexpected error: ${event.message}`));
window.addEventListener('unhandledrejection', (event) => { event.preventDefault(); showError(`Unexpected error: ${event.reason?.message ?? event.reason}`); });

// ---- Controls ------------------------------------------------------------------------------

// The controls a link holds (as URL parameters of the same names).
const SETTINGS = ['backend', 'count', 'digit', 'sampler', 'steps', 'seed', 'guidance', 'interval'];

function randomSeed() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

function applyUrlParams() {
  for (const key of SETTINGS) {
    if (!params.has(key)) continue;
    ui[key].value = params.get(key);
    if (ui[key].tagName === 'SELECT' && ui[key].value !== params.get(key)) {
      const allowed = [...ui[key].options].map((o) => o.value).join(', ');
      showError(`The link's ${key}=${params.get(key)} is not one of ${allowed}; using the default.`);
      ui[key].selectedIndex = [...ui[key].options].findIndex((o) => o.defaultSelected);
    }
  }
  if (!params.has('steps')) ui.steps.value = ui.sampler.selectedOptions[0].dataset.steps;
  if (params.has('t')) $('from-t').value = params.get('t');
  // A link made from a drawing holds its settings but not the drawing: open the pad.
  if (params.get('mode') === 'drawing') requestAnimationFrame(() => $('drawing').scrollIntoView());
  if (!ui.seed.value) ui.seed.value = randomSeed();
}

function syncControls() {
  $('guidance-value').textContent = Number(ui.guidance.value).toFixed(1);
  // -2: each digit 0–9 in turn, guided; -1: no label at all (the unconditional model), unguided.
  const unguided = Number(ui.digit.value) === -1;
  ui.guidance.disabled = unguided;
  ui.interval.disabled = unguided;
  const needsLabel = 'Guidance needs a label: choose digits to use it';
  $('guidance-label').title = unguided ? needsLabel : '';
  $('interval-label').title = unguided ? needsLabel
    : 'Guidance at every step, or only once the noise-to-signal ratio σ_t is at most 7: the noisiest steps then run unguided, which keeps the digits varied';
  $('steps-label').hidden = ui.sampler.value === 'ddpm';
}

// Only the samplers that run these weights are offered (data-objective): ε-prediction weights
// take the diffusion samplers, flow-matching weights Euler and Heun. A sampler the weights cannot
// run (from a link, or the previous weights) gives way to the first one that can, with a note.
function offerSamplersFor(objective) {
  for (const option of ui.sampler.options) {
    const fits = option.dataset.objective === objective;
    option.hidden = !fits; option.disabled = !fits;
  }
  const selected = ui.sampler.selectedOptions[0];
  if (selected && !selected.disabled) return;
  const first = [...ui.sampler.options].find((o) => !o.disabled);
  if (selected && params.has('sampler')) showError(`The link's sampler=${selected.value} cannot run these weights (${objective}); using ${first.value}.`);
  ui.sampler.value = first.value;
  samplerChanged();
}

// A new sampler starts from its own default step count (each option's data-steps).
function samplerChanged() {
  ui.steps.value = ui.sampler.selectedOptions[0].dataset.steps;
  syncControls();
}

function readParams() {
  const count = Number(ui.count.value);
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new Error('Digits must be a whole number from 1 to 64.');
  const kind = ui.sampler.value;
  const steps = Number(ui.steps.value);
  if (kind !== 'ddpm' && (!Number.isInteger(steps) || steps < 1 || steps > 1000)) throw new Error('Steps must be a whole number from 1 to 1000.');
  const seed = Number(ui.seed.value);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error('The seed must be a whole number ≥ 0.');
  // The shared SamplerKind as serde reads it; settings left out take the Rust defaults.
  const sampler = kind === 'ddpm' ? { kind } : kind === 'langevin' ? { kind, levels: steps } : { kind, steps };
  return {
    count, seed,
    digit: Number(ui.digit.value),
    guidance: Number(ui.guidance.value),
    guidanceSigmaMax: Number(ui.interval.value),
    sampler,
  };
}

// ---- Drawing -------------------------------------------------------------------------------

function layout(count) {
  const columns = Math.ceil(Math.sqrt(count));
  return { columns, rows: Math.ceil(count / columns) };
}

function prepareCanvas(canvas, count) {
  const { columns, rows } = layout(count);
  canvas.width = columns * (SIDE + 1) + 1;
  canvas.height = rows * (SIDE + 1) + 1;
  const context = canvas.getContext('2d');
  context.fillStyle = '#222';
  context.fillRect(0, 0, canvas.width, canvas.height);
}

// Draws count 28×28 grayscale digits (8-bit pixels, one after another) as a grid.
function drawDigits(canvas, pixels, count) {
  const { columns } = layout(count);
  const context = canvas.getContext('2d');
  const image = context.createImageData(SIDE, SIDE);
  for (let i = 0; i < count; i++) {
    for (let p = 0; p < SIDE * SIDE; p++) {
      const v = pixels[i * SIDE * SIDE + p];
      image.data[4 * p] = v; image.data[4 * p + 1] = v; image.data[4 * p + 2] = v; image.data[4 * p + 3] = 255;
    }
    context.putImageData(image, 1 + (i % columns) * (SIDE + 1), 1 + Math.floor(i / columns) * (SIDE + 1));
  }
}

// ---- Worker --------------------------------------------------------------------------------

let worker = null;
let currentBackend = null;
let timing = null;
let gpuName = null;

async function webgpuAvailable() {
  if (!navigator.gpu) return { ok: false, why: 'this browser does not expose WebGPU (navigator.gpu is missing)' };
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { ok: false, why: 'WebGPU found no usable GPU adapter' };
    // wgpu cannot read the adapter's name in a browser; WebGPU's own info can.
    const info = adapter.info ?? {};
    gpuName = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'WebGPU adapter';
    // A software adapter (SwiftShader) runs the U-Net ~30× slower than the WebAssembly CPU path.
    if (info.isFallbackAdapter || adapter.isFallbackAdapter || /swiftshader/i.test(gpuName)) {
      return { ok: false, why: `WebGPU only offers a software adapter (${gpuName}), which is slower than the CPU backend` };
    }
    return { ok: true };
  } catch (e) {
    return { ok: false, why: `WebGPU failed to start (${e.message})` };
  }
}

// "Automatic" starts on the CPU: its module is a sixth of the WebGPU module's size and has no
// shaders to compile, so the digits appear soonest, and a first visit stays under 3 MB. Once the
// page is idle (after the first run) it asks for a GPU adapter, and with a hardware one loads the
// WebGPU module in a second worker, which takes over when it is ready (see "The GPU, prepared in
// the background" below). Asked during loading, the adapter (the browser starting its GPU
// process) competed with the module for the CPU.
async function chooseBackend() {
  const wanted = ui.backend.value;
  gpuProbe = null;
  if (wanted === 'cpu' || wanted === 'auto') { notice(''); return 'cpu'; }
  const gpu = await webgpuAvailable();
  if (gpu.ok) { notice(''); return 'webgpu'; }
  // Asked for explicitly, a software adapter is still WebGPU: honour the choice.
  if (wanted === 'webgpu' && gpuName) { notice(`Using WebGPU as asked, but ${gpu.why}.`); return 'webgpu'; }
  notice(`Running on the CPU: ${gpu.why}.`);
  if (wanted === 'webgpu') ui.backend.value = 'cpu';
  return 'cpu';
}

// Which weights to load: `?weights=DIR` names another directory beside weights/ (for example
// flow-matching weights exported with `gendi export --out www/weights-flow`); only a plain name,
// so the page never fetches from anywhere but its own directory.
const WEIGHTS_ASKED = params.get('weights');
const WEIGHTS_DIR = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(WEIGHTS_ASKED ?? '') ? WEIGHTS_ASKED : 'weights';
if (WEIGHTS_DIR !== 'weights') {
  const back = $('other-weights');
  back.href = '?';
  back.textContent = 'Back to the default weights';
  back.parentElement.replaceChildren(back);
}

// The page starts drawing as soon as the model is ready the first time, so that a visitor sees
// digits form without looking for the button; not for a link to a drawing (it waits for one), nor
// with a reduced-motion preference, nor while a message about the link is shown (it would be
// cleared unread). `?autostart=0` waits for the button; `?autostart` starts in any case.
let autostartPending = params.has('autostart')
  ? params.get('autostart') !== '0'
  : params.get('mode') !== 'drawing' && !matchMedia('(prefers-reduced-motion: reduce)').matches;

// `?threads=N` caps the CPU backend's threads (default: every core the browser reports).
const THREADS = Math.max(0, Math.floor(Number(params.get('threads')) || 0));

// On WebGPU the warm-up runs the batches the current settings will: the digits, and with
// guidance twice as many (the noisiest steps, before the guidance interval, run the digits
// alone): its shaders are compiled for those shapes. The CPU has nothing to compile and does
// without: a one-image warm-up made its first step faster, but not by more than it took
// (plain visits' first drawn step, alternated: 1.17–1.59 s with it, 1.03–1.35 s without).
function warmBatchesFor(backend) {
  const count = Math.min(64, Math.max(1, Math.round(Number(ui.count.value)) || 1));
  return backend === 'cpu' ? [] : Number(ui.digit.value) === -1 ? [count] : [count, 2 * count];
}

// The page's directory, against which the worker resolves the weights.
const BASE = new URL('.', location.href).href;

function spawnWorker() {
  const spawned = new Worker(new URL('worker.js', import.meta.url), { type: 'module' });
  spawned.postMessage({ type: 'prefetch', base: BASE, weightsDir: WEIGHTS_DIR });
  return spawned;
}

function loadIn(target, backend) {
  target.postMessage({ type: 'load', backend, base: BASE, weightsDir: WEIGHTS_DIR, warmBatches: warmBatchesFor(backend), threads: THREADS });
}

function adopt(target) {
  worker = target;
  worker.onmessage = ({ data }) => handlers[data.type]?.(data);
  worker.onerror = (event) => {
    event.preventDefault();
    setState('error');
    showError(`The WebAssembly worker failed to start: ${event.message || 'see the browser console'}. ` +
      'Was ./build.sh run, so that www/pkg/ exists?', [['Retry', () => startWorker(currentBackend ?? chooseBackend())]]);
  };
}

// The worker starts at once and begins downloading the weights, which every backend needs;
// `backend` (a name, or the promise of one while the page asks WebGPU for an adapter, which can
// take a good part of a second) decides which module it then loads.
async function startWorker(backend) {
  if (worker) worker.terminate();
  dropStandby();
  currentBackend = null;
  setState('loading');
  clearError();
  if (WEIGHTS_ASKED !== null && WEIGHTS_DIR !== WEIGHTS_ASKED) {
    showError(`The link's weights=${WEIGHTS_ASKED} is not a directory name beside the page; loading the page's own weights.`);
  }
  $('loading').hidden = false;
  $('load-label').textContent = 'Loading the model…';
  $('load-progress').removeAttribute('value');
  const started = spawnWorker();
  adopt(started);
  const chosen = await backend;
  if (worker !== started) return; // replaced meanwhile
  currentBackend = chosen;
  loadIn(started, chosen);
}

// ---- The GPU, prepared in the background ---------------------------------------------------

// With "Automatic" on the CPU and a hardware GPU found: a second worker loads the WebGPU module
// and warms it up while the page is idle, then replaces the CPU worker between runs. If it
// fails, the page stays on the CPU and says why.
let gpuProbe = null; // webgpuAvailable()'s answer, once asked
let standby = null;
let standbyReady = null;

// "Automatic", on the CPU, idle, and not yet preparing the GPU.
const gpuWanted = () => !standby && currentBackend === 'cpu' && ui.backend.value === 'auto' &&
  gendi.state === 'ready' && !autostartPending;

async function prepareGpu() {
  if (!gpuWanted()) return;
  const probe = (gpuProbe ??= webgpuAvailable().then((gpu) => {
    if (!gpu.ok) addNotice(`Running on the CPU: ${gpu.why}.`);
    return gpu;
  }));
  const gpu = await probe;
  // Asked again now: the page may have moved on while the adapter was requested.
  if (!gpu.ok || probe !== gpuProbe || !gpuWanted()) return;
  const spawned = (standby = spawnWorker());
  const giveUp = (why) => {
    if (standby !== spawned) return;
    dropStandby();
    gpuProbe = Promise.resolve({ ok: false });
    addNotice(`WebGPU could not start (${why}), so the page stays on the CPU.`);
    $('stat-backend').textContent = 'CPU';
  };
  spawned.onerror = (event) => { event.preventDefault(); giveUp(event.message || 'its worker failed'); };
  spawned.onmessage = ({ data }) => {
    if (data.type === 'error') giveUp(data.message);
    else if (data.type === 'ready') { standbyReady = data; promoteGpu(); }
  };
  loadIn(spawned, 'webgpu');
  $('stat-backend').textContent = 'CPU (preparing WebGPU…)';
}

// The prepared GPU worker takes over, unless a run is on: then when it ends.
function promoteGpu() {
  if (!standbyReady || gendi.state !== 'ready') return;
  const ready = standbyReady;
  const promoted = standby;
  standby = null;
  standbyReady = null;
  worker.terminate();
  adopt(promoted);
  currentBackend = 'webgpu';
  handlers.ready(ready);
  addNotice(`A GPU was found (${gendi.adapter}): runs from now on use WebGPU.`);
}

function dropStandby() {
  standby?.terminate();
  standby = null;
  standbyReady = null;
}

const handlers = {
  progress({ received, total, cached }) {
    const bar = $('load-progress');
    bar.max = total; bar.value = received;
    const mb = (n) => (n / 1e6).toFixed(2);
    $('load-label').textContent = cached ? `Weights from the browser cache (${mb(total)} MB)` : `Downloading weights: ${mb(received)} of ${mb(total)} MB`;
  },
  warming({ backend }) {
    $('load-label').textContent = backend === 'webgpu' ? 'Preparing the GPU (compiling shaders)…' : 'Preparing…';
    $('load-progress').removeAttribute('value');
  },
  ready({ backend, adapter, info, warmUpMs, phases, threads, isolated, threadsNote }) {
    gendi.backend = backend; gendi.T = info.timesteps; gendi.warmUpMs = warmUpMs; gendi.threads = threads;
    // Each loading phase's end in ms since navigation, like the page's own clock.
    gendi.loadPhases = Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, v - performance.timeOrigin]));
    if (backend === 'cpu' && !isolated && (navigator.hardwareConcurrency || 1) > 1) {
      const oneThread = 'The CPU backend runs on one thread: this server does not make the page cross-origin ' +
        'isolated (the Cross-Origin-Opener-Policy and Cross-Origin-Embedder-Policy headers; see the README).';
      addNotice(oneThread);
    }
    if (threadsNote) addNotice(threadsNote);
    $('from-t').max = info.timesteps - 1;
    gendi.adapter = backend === 'webgpu' && gpuName ? gpuName : adapter;
    $('loading').hidden = true;
    $('stat-backend').textContent = backend === 'webgpu' ? 'WebGPU' : 'CPU';
    $('stat-adapter').textContent = gendi.adapter;
    $('model-info').textContent = `U-Net with ${info.parameters.toLocaleString('en')} parameters, ` +
      `${info.objective === 'flow' ? 'flow matching (velocity)' : 'ε-prediction (diffusion)'}, trained for ${info.trainingSteps.toLocaleString('en')} steps, T = ${info.timesteps}. Weights ${(info.bytes / 1e6).toFixed(2)} MB, SHA-256 ${info.sha256.slice(0, 12)}…`;
    offerSamplersFor(info.objective);
    if (!info.conditional) ui.digit.value = '-1';
    ui.digit.disabled = !info.conditional;
    syncControls();
    setState('ready');
    preview();
    if (autostartPending && !gendi.error) generate();
    autostartPending = false;
    prepareGpu();
  },
  started({ total, params: p }) {
    prepareCanvas($('xt'), p.count);
    prepareCanvas($('x0'), p.count);
    replay.reset(total, p.count);
    timing = { started: performance.now(), total };
    $('stat-step').textContent = `0 / ${total}`;
  },
  frame(frame) {
    if (frame.step === frame.total) {
      lastResult = frame.xt.slice(0, SIDE * SIDE);
      $('pad-use-result').disabled = false;
    }
    replay.record(frame);
    if (replay.following()) {
      drawDigits($('xt'), frame.xt, frame.count);
      drawDigits($('x0'), frame.x0, frame.count);
    }
    gendi.framesDrawn += 1;
    gendi.lastFrame = { t: frame.t, step: frame.step, total: frame.total };
    const elapsed = (performance.now() - timing.started) / 1000;
    $('stat-step').textContent = `${frame.step} / ${frame.total}`;
    $('stat-t').textContent = `${frame.t} / ${gendi.T}`;
    $('stat-ms').textContent = frame.ms.toFixed(1);
    $('stat-rate').textContent = (frame.step / elapsed).toFixed(1);
    window.dispatchEvent(new CustomEvent('gendi-frame', { detail: { t: frame.t, step: frame.step, total: frame.total, ms: frame.ms, xtRaw: frame.xtRaw } }));
  },
  done({ seconds }) {
    $('stat-rate').textContent += ` (${seconds.toFixed(1)} s total)`;
    setState('ready');
    replay.sync(replay.following());
    window.dispatchEvent(new CustomEvent('gendi-done'));
    prepareGpu();
    promoteGpu();
  },
  stopped() { setState('ready'); replay.sync(replay.following()); prepareGpu(); promoteGpu(); },
  gif({ gif }) {
    gendi.gif = gif;
    $('save-gif').disabled = false;
    download(new Blob([gif], { type: 'image/gif' }), `gendi-seed${ui.seed.value}.gif`);
  },
  noised({ xt, signal, noise, snr, t, failed }) {
    previewBusy = false;
    if (failed) return;
    const canvas = $('pad-noised');
    canvas.width = SIDE; canvas.height = SIDE;
    const image = new ImageData(SIDE, SIDE);
    xt.forEach((v, i) => { image.data.set([v, v, v, 255], 4 * i); });
    canvas.getContext('2d').putImageData(image, 0, 0);
    gendi.noisedPreview = { t, xt: Array.from(xt) };
    $('from-t-info').textContent = `t = ${t}: x_t = ${signal.toFixed(3)}·x₀ + ${noise.toFixed(3)}·ε, signal-to-noise ratio ${snr < 0.01 ? snr.toExponential(1) : snr.toFixed(2)}`;
    if (previewAgain) { previewAgain = false; preview(); }
  },
  error({ message, context, crashed }) {
    if (context === 'start' && !crashed) {
      // Settings the model refused: nothing broke, so the page stays ready.
      setState('ready');
      showError(`These settings cannot run: ${message}`);
      return;
    }
    setState('error');
    const actions = [];
    if (currentBackend === 'webgpu') {
      actions.push(['Switch to the CPU backend', () => { ui.backend.value = 'cpu'; startWorker('cpu'); }]);
    }
    actions.push(['Retry', () => startWorker(currentBackend ?? chooseBackend())]);
    const prefix = context === 'generate' && currentBackend === 'webgpu'
      ? 'The GPU stopped responding (the WebGPU device may have been lost): '
      : context === 'load' ? 'The model could not be loaded: ' : '';
    showError(prefix + message, actions);
  },
};

function generate(from = null) {
  let p;
  try { p = readParams(); } catch (e) { showError(e.message); return; }
  if (from) p.from = from;
  gendi.mode = from ? 'drawing' : 'noise';
  syncUrl();
  clearError();
  gendi.framesDrawn = 0;
  setState('running');
  worker.postMessage({ type: 'generate', params: p });
}

// ---- Replay: stored frames, scrubbing, play, a digit's trajectory --------------------------

// At most this many frames are kept: every step up to it, evenly spaced ones beyond.
const MAX_FRAMES = 100;

const replay = {
  frames: [], total: 0, count: 0, timer: null,
  reset(total, count) {
    this.stop();
    this.frames = []; this.total = total; this.count = count;
    $('trajectory-figure').hidden = true;
    this.sync();
  },
  // Keeps step s when it is the last or crosses one of MAX_FRAMES even marks.
  record({ step, total, t, xt, x0 }) {
    const mark = (s) => Math.floor((s * MAX_FRAMES) / total);
    if (total > MAX_FRAMES && step !== total && mark(step) === mark(step - 1)) return;
    const atEnd = this.following();
    // The worker transferred these buffers to the page: kept as they are, not copied.
    this.frames.push({ step, t, xt, x0 });
    this.sync(atEnd);
  },
  // Whether the slider is at the newest frame, so new frames show as they come.
  following() { return Number($('scrub').value) >= this.frames.length - 1; },
  sync(follow = true) {
    const scrub = $('scrub');
    scrub.max = Math.max(0, this.frames.length - 1);
    if (follow) scrub.value = scrub.max;
    scrub.disabled = this.frames.length === 0;
    $('play').disabled = this.frames.length < 2;
    $('save-png').disabled = this.frames.length === 0;
    $('save-gif').disabled = this.frames.length === 0 || gendi.state === 'running';
    this.label();
  },
  label() {
    const frame = this.frames[Number($('scrub').value)];
    $('scrub-value').textContent = frame ? `step ${frame.step} / ${this.total}, t = ${frame.t}` : '–';
  },
  show(index) {
    const frame = this.frames[index];
    if (!frame) return;
    $('scrub').value = index;
    drawDigits($('xt'), frame.xt, this.count);
    drawDigits($('x0'), frame.x0, this.count);
    this.label();
    gendi.shownFrame = { index, step: frame.step, t: frame.t };
  },
  play() {
    if (this.timer) { this.stop(); return; }
    if (this.following()) this.show(0);
    $('play').textContent = '❚❚ Pause';
    this.timer = setInterval(() => {
      const next = Number($('scrub').value) + 1;
      if (next >= this.frames.length) { this.stop(); return; }
      this.show(next);
    }, 1000 / Number($('speed').value));
  },
  stop() {
    clearInterval(this.timer);
    this.timer = null;
    $('play').textContent = '▶ Play';
  },
  // One digit's x_t (top row) and x̂_0 (bottom row) in up to 20 evenly spaced stored frames.
  trajectory(digit) {
    const picked = [];
    const n = Math.min(20, this.frames.length);
    for (let i = 0; i < n; i++) picked.push(this.frames[Math.round((i * (this.frames.length - 1)) / Math.max(1, n - 1))]);
    const canvas = $('trajectory');
    canvas.width = n * (SIDE + 1) + 1;
    canvas.height = 2 * (SIDE + 1) + 1;
    const context = canvas.getContext('2d');
    context.fillStyle = '#222';
    context.fillRect(0, 0, canvas.width, canvas.height);
    const image = context.createImageData(SIDE, SIDE);
    picked.forEach((frame, column) => {
      [frame.xt, frame.x0].forEach((pixels, row) => {
        for (let p = 0; p < SIDE * SIDE; p++) {
          const v = pixels[digit * SIDE * SIDE + p];
          image.data.set([v, v, v, 255], 4 * p);
        }
        context.putImageData(image, 1 + column * (SIDE + 1), 1 + row * (SIDE + 1));
      });
    });
    $('trajectory-caption').textContent = `digit ${digit + 1}: x_t (top) and x̂_0 (bottom) at steps ${picked.map((f) => f.step).join(', ')}`;
    $('trajectory-figure').hidden = false;
    gendi.trajectory = { digit, steps: picked.map((f) => f.step) };
  },
};

$('scrub').addEventListener('input', () => { replay.stop(); replay.show(Number($('scrub').value)); });
$('play').addEventListener('click', () => replay.play());
for (const id of ['xt', 'x0']) {
  $(id).addEventListener('click', (event) => {
    if (!replay.frames.length) return;
    const box = event.target.getBoundingClientRect();
    const scale = event.target.width / box.width;
    const cell = SIDE + 1;
    const column = Math.floor(((event.clientX - box.left) * scale - 1) / cell);
    const row = Math.floor(((event.clientY - box.top) * scale - 1) / cell);
    const digit = row * layout(replay.count).columns + column;
    if (column >= 0 && column < layout(replay.count).columns && digit >= 0 && digit < replay.count) replay.trajectory(digit);
  });
}

// ---- Export and share ----------------------------------------------------------------------

// A link to the current settings (and, for a drawing, the mode and noise level).
function shareUrl() {
  const url = new URL(location.href);
  url.search = '';
  for (const key of SETTINGS) url.searchParams.set(key, ui[key].value);
  if (WEIGHTS_DIR !== 'weights') url.searchParams.set('weights', WEIGHTS_DIR);
  if (gendi.mode === 'drawing') { url.searchParams.set('mode', 'drawing'); url.searchParams.set('t', $('from-t').value); }
  return url.href;
}

function syncUrl() {
  history.replaceState(null, '', shareUrl());
  $('share-url').value = location.href;
}

$('copy-link').addEventListener('click', async () => {
  syncUrl();
  const field = $('share-url');
  field.hidden = false;
  try {
    await navigator.clipboard.writeText(field.value);
    $('copy-link').textContent = 'Link copied';
  } catch {
    // No clipboard permission: the link is shown, selected, for copying by hand.
    field.select();
    $('copy-link').textContent = 'Copy the link below';
  }
  setTimeout(() => { $('copy-link').textContent = 'Copy link'; }, 2500);
});

// The frame on screen (x_t and x̂_0 side by side), 4× larger, as a PNG download.
$('save-png').addEventListener('click', () => {
  const [xt, x0] = [$('xt'), $('x0')];
  const zoom = 4;
  const out = document.createElement('canvas');
  out.width = (xt.width * 2 + 4) * zoom; out.height = xt.height * zoom;
  const context = out.getContext('2d');
  context.imageSmoothingEnabled = false;
  context.fillStyle = '#101418';
  context.fillRect(0, 0, out.width, out.height);
  context.drawImage(xt, 0, 0, xt.width * zoom, xt.height * zoom);
  context.drawImage(x0, (xt.width + 4) * zoom, 0, x0.width * zoom, x0.height * zoom);
  out.toBlob((blob) => download(blob, `gendi-seed${ui.seed.value}-step${gendi.shownFrame?.step ?? gendi.lastFrame?.step}.png`));
});

// The stored frames' x_t as an animated GIF, encoded by the wasm module (the `gif` crate).
$('save-gif').addEventListener('click', () => {
  const frames = replay.frames;
  const all = new Uint8Array(frames.length * replay.count * SIDE * SIDE);
  frames.forEach((f, i) => all.set(f.xt, i * f.xt.length));
  $('save-gif').disabled = true;
  worker.postMessage({ type: 'gif', frames: all, count: replay.count, zoom: GIF_ZOOM, delayMs: Math.round(1000 / Number($('speed').value)) }, [all.buffer]);
});
const GIF_ZOOM = 4;

function download(blob, name) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

// ---- Drawing pad (SDEdit) -------------------------------------------------------------------

const pad = createPad($('pad'), () => { syncDenoise(); preview(); });
let previewBusy = false;
// The first digit of the last finished run, for "Use the result".
let lastResult = null;
let previewAgain = false;

function syncDenoise() {
  $('denoise').disabled = gendi.state !== 'ready' || pad.isEmpty();
  $('denoise').title = pad.isEmpty() ? 'Draw a digit first' : '';
}

// x_t of the drawing at the slider's t, from the worker; one request in flight at a time.
function preview() {
  $('from-t-value').textContent = $('from-t').value;
  if (!worker || gendi.state === 'loading') return;
  if (previewBusy) { previewAgain = true; return; }
  const seed = Number(ui.seed.value);
  if (!Number.isSafeInteger(seed) || seed < 0) return;
  previewBusy = true;
  worker.postMessage({ type: 'noised', pixels: pad.pixels().slice(), t: Number($('from-t').value), seed });
}

$('pad-undo').addEventListener('click', () => pad.undo());
$('pad-clear').addEventListener('click', () => pad.clear());
$('from-t').addEventListener('input', preview);
ui.seed.addEventListener('input', preview);
$('pad-clear-mask').addEventListener('click', () => pad.clearMask());
for (const radio of document.querySelectorAll('input[name=brush]')) radio.addEventListener('change', () => pad.setMode(radio.value));
$('pad-use-result').addEventListener('click', () => { pad.load(lastResult); $('pad-caption').textContent = 'the last result'; });
$('pad-real').addEventListener('click', () => loadRealDigit().catch((e) => showError(`Could not load the MNIST digits: ${e.message}`)));

// The first 200 MNIST test digits (www/digits, idx files as MNIST ships them, 31 kB gzipped),
// fetched the first time they are asked for; each click shows the next one.
let realDigits = null;
let realIndex = -1;
async function loadRealDigit() {
  if (!realDigits) {
    const get = async (name) => {
      const response = await fetch(`digits/${name}`);
      if (!response.ok) throw new Error(`digits/${name}: HTTP ${response.status}`);
      return new Uint8Array(await response.arrayBuffer());
    };
    const [images, labels] = await Promise.all([get('mnist-test-images-idx3-ubyte'), get('mnist-test-labels-idx1-ubyte')]);
    const count = new DataView(images.buffer).getUint32(4);
    if (images.length !== 16 + count * SIDE * SIDE || labels.length !== 8 + count) throw new Error('the idx files are truncated');
    realDigits = { images: images.subarray(16), labels: labels.subarray(8), count };
    realIndex = Number(ui.seed.value) % count - 1;
  }
  realIndex = (realIndex + 1) % realDigits.count;
  pad.load(realDigits.images.subarray(realIndex * SIDE * SIDE, (realIndex + 1) * SIDE * SIDE));
  $('pad-caption').textContent = `MNIST test digit ${realIndex + 1} (a ${realDigits.labels[realIndex]})`;
  gendi.realDigit = { index: realIndex, label: realDigits.labels[realIndex] };
}
$('denoise').addEventListener('click', () => {
  const from = { pixels: Array.from(pad.pixels()), t: Number($('from-t').value) };
  const mask = pad.mask();
  if (mask) from.redraw = Array.from(mask);
  generate(from);
});
gendi.pad = pad;

// ---- Wiring --------------------------------------------------------------------------------

$('controls').addEventListener('submit', (event) => { event.preventDefault(); generate(); });
ui.stop.addEventListener('click', () => worker.postMessage({ type: 'stop' }));
$('reseed').addEventListener('click', () => { ui.seed.value = randomSeed(); });
for (const control of [ui.guidance, ui.digit]) control.addEventListener('input', syncControls);
for (const control of Object.values(ui)) control.addEventListener('change', syncUrl);
ui.sampler.addEventListener('input', samplerChanged);
ui.backend.addEventListener('change', () => startWorker(chooseBackend()));

applyUrlParams();
syncControls();
startWorker(chooseBackend());
