// The page in a real browser: real shipped weights, WebGPU (SwiftShader) and the CPU backend,
// every step drawn, both backends equal to the native sampler, and clear errors for bad files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { serveWww, launchBrowser, openPage, waitLoaded, ARTIFACTS, AXE_PATH, ROOT, WWW } from './harness.mjs';

// The page's default digits: a guided mix of 0–9 (`--digit mixed` natively, -2 in the page's selector).
// No guidance is given to either side: the page's slider default must be the native DEFAULT_GUIDANCE,
// and its interval DEFAULT_GUIDANCE_SIGMA_MAX. DPM-Solver++ 4 steps at t = 999, 749, 499: the
// first two run before the guidance interval (σ_t > 7, the conditional model alone), the third is
// guided; the second and third use the multistep history, kept in the wasm module.
const RUN = { count: 2, seed: 1234, digit: 'mixed', sampler: 'dpm-solver', steps: 4 };
const PAGE_DIGIT = { mixed: -2, none: -1 };
const STEPS_CHECKED = 3;
let server, browser, reference;
// This file's temporary files (references, flow weights, digits to classify): removed after the last test.
let scratch;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  scratch = mkdtempSync(join(tmpdir(), 'gendi-browser-'));
  // The native sampler's x_t after each of the first steps, from the same shipped weights.
  const out = join(mkdtempSync(join(scratch, 'ref-')), 'reference.json');
  const bin = process.env.GENDI_BIN ?? 'gendi';
  execFileSync(bin, ['reference', '--out', out, '--count', String(RUN.count), '--seed', String(RUN.seed),
    '--digit', String(RUN.digit), '--sampler', RUN.sampler, '--steps', String(RUN.steps),
    '--record', String(STEPS_CHECKED), '--weights', join(WWW, 'weights')], { stdio: 'inherit' });
  reference = JSON.parse(readFileSync(out, 'utf8'));
  server = await serveWww();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function query(backend, extra = {}, url = server.url) {
  const p = new URLSearchParams({ autostart: 0, backend, count: RUN.count, seed: RUN.seed, digit: PAGE_DIGIT[RUN.digit] ?? RUN.digit, sampler: RUN.sampler, steps: RUN.steps, ...extra });
  return `${url}?${p}`;
}

// Runs STEPS_CHECKED steps; returns, per step, what the canvas showed and the raw x_t.
async function runSteps(page) {
  await page.evaluate((n) => {
    window.__frames = [];
    window.addEventListener('gendi-frame', (event) => {
      if (window.__frames.length >= n) return;
      window.__frames.push({
        step: event.detail.step,
        t: event.detail.t,
        canvas: document.getElementById('xt').toDataURL(),
        prediction: document.getElementById('x0').toDataURL(),
        xt: Array.from(event.detail.xtRaw),
      });
      if (window.__frames.length === n) document.getElementById('stop').click();
    });
  }, STEPS_CHECKED);
  await page.click('#start');
  await page.waitForFunction((n) => window.__frames.length >= n, STEPS_CHECKED, { timeout: 300_000, polling: 250 });
  return page.evaluate(() => window.__frames);
}

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
}

const results = {};

for (const backend of ['webgpu', 'cpu']) {
  test(`${backend}: real weights load, every step is drawn, x_t matches the native sampler`, { timeout: 600_000 }, async () => {
    const { context, page, external, consoleErrors } = await openPage(browser, server);
    try {
      await page.goto(query(backend));
      assert.equal(await waitLoaded(page), 'ready', await page.evaluate(() => window.gendi.error));
      const info = await page.evaluate(() => ({ backend: window.gendi.backend, adapter: window.gendi.adapter }));
      assert.equal(info.backend, backend);
      assert.ok(info.adapter.length > 0, 'the adapter name is shown');
      assert.equal(await page.textContent('#stat-backend'), backend === 'webgpu' ? 'WebGPU' : 'CPU');
      if (backend === 'cpu') {
        // The server sends the isolation headers: the CPU backend runs on every core.
        const cores = await page.evaluate(() => navigator.hardwareConcurrency);
        assert.equal(await page.evaluate(() => window.gendi.threads), cores);
        assert.match(info.adapter, cores > 1 ? new RegExp(`${cores} threads`) : /1 thread/);
      }

      const frames = await runSteps(page);
      assert.deepEqual(frames.map((f) => f.t), reference.timesteps.slice(0, STEPS_CHECKED));
      for (let i = 1; i < frames.length; i++) {
        assert.notEqual(frames[i].canvas, frames[i - 1].canvas, `the x_t canvas changed at step ${i + 1}`);
        assert.notEqual(frames[i].prediction, frames[i - 1].prediction, `the x̂0 canvas changed at step ${i + 1}`);
      }
      frames.forEach((frame, i) => {
        const diff = maxAbsDiff(frame.xt, reference.steps[i]);
        assert.ok(diff < 2e-3, `${backend} step ${i + 1}: x_t differs from native by ${diff}`);
      });
      results[backend] = frames;
      await page.screenshot({ path: join(ARTIFACTS, `page-${backend}.png`), fullPage: true });
      assert.deepEqual(external, [], 'the page made no request outside its own server');
      assert.deepEqual(consoleErrors, []);
    } finally {
      await context.close();
    }
  });
}

test('the CPU backend and WebGPU give the same x_t for the same seed', () => {
  assert.ok(results.webgpu && results.cpu, 'both backend tests ran');
  results.cpu.forEach((frame, i) => {
    const diff = maxAbsDiff(frame.xt, results.webgpu[i].xt);
    assert.ok(diff < 2e-3, `step ${i + 1}: CPU and WebGPU differ by ${diff}`);
  });
});

test('flow-matching weights: the page offers Euler and Heun only, and Heun\'s x_t matches the native sampler', { timeout: 400_000 }, async () => {
  // Real flow-matching weights, made the way a user makes them: a (very short) `gendi train
  // --objective flow`, exported, then served in place of the shipped ones.
  const bin = process.env.GENDI_BIN ?? 'gendi';
  const dir = mkdtempSync(join(scratch, 'flow-'));
  execFileSync(bin, ['train', '--run-dir', join(dir, 'run'), '--objective', 'flow', '--steps', '3', '--warmup', '1',
    '--batch-size', '8', '--limit', '64', '--base-channels', '8', '--sample-every', '0'], { stdio: 'inherit' });
  execFileSync(bin, ['export', '--checkpoint', join(dir, 'run', 'checkpoint.gendi'), '--out', join(dir, 'weights')], { stdio: 'inherit' });
  const run = { count: 2, seed: 77, steps: 4 };
  const out = join(dir, 'reference.json');
  execFileSync(bin, ['reference', '--out', out, '--count', String(run.count), '--seed', String(run.seed), '--digit', 'mixed',
    '--sampler', 'heun', '--steps', String(run.steps), '--record', String(STEPS_CHECKED), '--weights', join(dir, 'weights')], { stdio: 'inherit' });
  const flowReference = JSON.parse(readFileSync(out, 'utf8'));
  // Heun: the Euler guess and its correction evaluate at the same t.
  assert.deepEqual(flowReference.timesteps, [999, 749, 749, 499, 499, 249, 249]);

  const { context, page, external, consoleErrors } = await openPage(browser, server);
  try {
    for (const file of ['manifest.json', 'gendi.bpk']) {
      const body = readFileSync(join(dir, 'weights', file));
      await page.route(`**/weights/${file}`, (route) => route.fulfill({ status: 200, body, contentType: 'application/octet-stream' }));
    }
    // A link made for diffusion weights: its sampler gives way to Heun, with a note.
    await page.goto(`${server.url}?autostart=0&backend=cpu&sampler=ddim&steps=50`);
    assert.equal(await waitLoaded(page), 'ready', await page.evaluate(() => window.gendi.error));
    assert.equal(await page.inputValue('#sampler'), 'heun');
    assert.equal(await page.inputValue('#steps'), '10');
    assert.match(await page.evaluate(() => window.gendi.error), /sampler=ddim cannot run these weights/);
    const offered = await page.$$eval('#sampler option', (options) => options.filter((o) => !o.disabled && !o.hidden).map((o) => o.value));
    assert.deepEqual(offered, ['heun', 'euler']);
    assert.match(await page.textContent('#model-info'), /flow matching/);

    const p = new URLSearchParams({ backend: 'cpu', count: run.count, seed: run.seed, digit: -2, sampler: 'heun', steps: run.steps });
    await page.goto(`${server.url}?autostart=0&${p}`);
    assert.equal(await waitLoaded(page), 'ready', await page.evaluate(() => window.gendi.error));
    const frames = await runSteps(page);
    assert.deepEqual(frames.map((f) => f.t), flowReference.timesteps.slice(0, STEPS_CHECKED));
    frames.forEach((frame, i) => {
      const diff = maxAbsDiff(frame.xt, flowReference.steps[i]);
      assert.ok(diff < 2e-3, `Heun step ${i + 1}: x_t differs from native by ${diff}`);
    });
    // The noise slider follows the flow's straight path: x_t = (1 − σ)·x₀ + σ·ε, σ = (t + 1)/T.
    await page.$eval('#from-t', (el) => { el.value = '499'; el.dispatchEvent(new Event('input')); });
    await page.waitForFunction(() => window.gendi.noisedPreview?.t === 499, null, { timeout: 60_000 });
    assert.match(await page.textContent('#from-t-info'), /x_t = 0\.500·x₀ \+ 0\.500·ε/);
    assert.deepEqual(external, [], 'the page made no request outside its own server');
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});

test('a corrupted weights file shows an error in the page', { timeout: 300_000 }, async () => {
  const { context, page } = await openPage(browser, server);
  try {
    const good = readFileSync(join(WWW, 'weights', 'gendi.bpk'));
    const bad = Buffer.from(good);
    bad[bad.length >> 1] ^= 0xff;
    await page.route('**/weights/gendi.bpk', (route) => route.fulfill({ status: 200, body: bad, contentType: 'application/octet-stream' }));
    await page.goto(`${server.url}?autostart=0&backend=cpu`);
    assert.equal(await waitLoaded(page), 'error');
    const text = await page.textContent('#error');
    assert.match(text, /corrupted/);
    assert.ok(await page.isVisible('#error'));
    await page.screenshot({ path: join(ARTIFACTS, 'error-corrupted.png') });
  } finally {
    await context.close();
  }
});

test('a missing manifest shows an error in the page', { timeout: 300_000 }, async () => {
  const { context, page } = await openPage(browser, server);
  try {
    await page.route('**/weights/manifest.json', (route) => route.fulfill({ status: 404, body: 'not found' }));
    await page.goto(`${server.url}?autostart=0&backend=cpu`);
    assert.equal(await waitLoaded(page), 'error');
    const text = await page.textContent('#error');
    assert.match(text, /manifest/);
    assert.match(text, /404/);
  } finally {
    await context.close();
  }
});

test('a worker script that fails to load shows an error in the page', { timeout: 300_000 }, async () => {
  const { context, page } = await openPage(browser, server);
  try {
    await page.route('**/worker.js', (route) => route.fulfill({ status: 404, body: 'not found' }));
    await page.goto(`${server.url}?autostart=0`);
    assert.equal(await waitLoaded(page), 'error');
    assert.match(await page.textContent('#error'), /worker failed to start/);
    assert.ok(await page.isVisible('#error'));
  } finally {
    await context.close();
  }
});

test('?weights= loads another directory beside the page, and nothing else', { timeout: 300_000 }, async () => {
  const { context, page, external } = await openPage(browser, server);
  try {
    await page.goto(`${server.url}?autostart=0&backend=cpu&weights=weights-missing`);
    assert.equal(await waitLoaded(page), 'error');
    assert.match(await page.textContent('#error'), /weights-missing\/manifest\.json.*404/s);
    // The flow-matching weights shipped beside the default ones.
    await page.goto(`${server.url}?autostart=0&backend=cpu&weights=weights-flow`);
    assert.equal(await waitLoaded(page), 'ready', await page.evaluate(() => window.gendi.error));
    assert.equal(await page.inputValue('#sampler'), 'heun');
    assert.match(await page.textContent('#model-info'), /flow matching/);
    assert.equal(await page.textContent('#other-weights'), 'Back to the default weights');
    // A URL or a path is not a directory name: the page's own weights load, with a note.
    await page.goto(`${server.url}?autostart=0&backend=cpu&weights=${encodeURIComponent('https://example.com/w')}`);
    assert.equal(await waitLoaded(page), 'ready');
    assert.match(await page.evaluate(() => window.gendi.error), /is not a directory name beside the page/);
    assert.deepEqual(external, [], 'nothing was fetched from outside the test server');
  } finally {
    await context.close();
  }
});

test('the CPU backend gives exactly the same x_t on one thread (?threads=1) as on every core', { timeout: 300_000 }, async () => {
  assert.ok(results.cpu, 'the CPU backend test ran');
  const { context, page, consoleErrors } = await openPage(browser, server);
  try {
    await page.goto(query('cpu', { threads: 1 }));
    assert.equal(await waitLoaded(page), 'ready');
    assert.equal(await page.evaluate(() => window.gendi.threads), 1);
    const frames = await runSteps(page);
    frames.forEach((frame, i) => assert.deepEqual(frame.xt, results.cpu[i].xt, `step ${i + 1} differs`));
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});

test('"Guided steps: all" guides the steps before the interval too, and the link keeps it', { timeout: 300_000 }, async () => {
  assert.ok(results.cpu, 'the CPU backend test ran');
  const { context, page, consoleErrors } = await openPage(browser, server);
  try {
    await page.goto(query('cpu'));
    assert.equal(await waitLoaded(page), 'ready');
    assert.equal(await page.inputValue('#interval'), '7', 'the default interval');
    await page.selectOption('#interval', 'Infinity');
    assert.match(await page.evaluate(() => location.search), /interval=Infinity/, 'the link holds it');
    const frames = await runSteps(page);
    // t = 999 is unguided by default (σ_t ≈ 157 > 7): guided, the first step moves elsewhere.
    assert.ok(maxAbsDiff(frames[0].xt, results.cpu[0].xt) > 1e-3, 'the first step is guided');
    // The link reopens with it.
    await page.goto(query('cpu', { interval: 'Infinity' }));
    assert.equal(await waitLoaded(page), 'ready');
    assert.equal(await page.inputValue('#interval'), 'Infinity');
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});

test('a server without the isolation headers: the CPU backend runs on one thread and the page says why', { timeout: 300_000 }, async () => {
  const plain = await serveWww({ isolated: false });
  const { context, page, consoleErrors } = await openPage(browser, plain);
  try {
    await page.goto(query('cpu', {}, plain.url));
    assert.equal(await waitLoaded(page), 'ready', await page.evaluate(() => window.gendi.error));
    assert.equal(await page.evaluate(() => window.gendi.threads), 1);
    assert.ok(await page.isVisible('#notice'));
    assert.match(await page.textContent('#notice'), /one thread.*cross-origin isolated/);
    const frames = await runSteps(page);
    frames.forEach((frame, i) => assert.deepEqual(frame.xt, results.cpu[i].xt, `step ${i + 1} differs`));
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
    await plain.close();
  }
});

test('a plain visit: a software-only WebGPU adapter falls back to the CPU with a notice, and digits start forming without a click', { timeout: 300_000 }, async () => {
  const { context, page } = await openPage(browser, server);
  try {
    await page.goto(server.url);
    assert.equal(await waitLoaded(page), 'running', await page.evaluate(() => window.gendi.error));
    await page.waitForFunction(() => window.gendi.framesDrawn >= 2, null, { timeout: 120_000, polling: 100 });
    await page.click('#stop');
    await page.waitForFunction(() => window.gendi.state === 'ready', null, { timeout: 60_000, polling: 100 });
    assert.equal(await page.evaluate(() => window.gendi.backend), 'cpu');
    // Idle after the run, the page asks for an adapter and finds only a software one.
    await page.waitForFunction(() => /software adapter/.test(document.getElementById('notice').textContent), null, { timeout: 60_000, polling: 100 });
    assert.ok(await page.isVisible('#notice'));
    assert.equal(await page.evaluate(() => window.gendi.backend), 'cpu', 'and stays on the CPU');
    assert.match(await page.inputValue('#seed'), /^\d+$/, 'a random seed is shown');
  } finally {
    await context.close();
  }
  // With a reduced-motion preference the page waits for the button.
  const still = await openPage(browser, server, { contextOptions: { reducedMotion: 'reduce' } });
  try {
    await still.page.goto(server.url);
    assert.equal(await waitLoaded(still.page), 'ready', await still.page.evaluate(() => window.gendi.error));
    assert.equal(await still.page.evaluate(() => window.gendi.framesDrawn), 0);
  } finally {
    await still.context.close();
  }
});

test('a plain visit with a hardware GPU: the first run is on the CPU, then WebGPU, prepared in the background, takes over', { timeout: 400_000 }, async () => {
  const { context, page, consoleErrors } = await openPage(browser, server);
  try {
    // SwiftShader, reported to the page as a hardware adapter (the worker still gets SwiftShader).
    await page.addInitScript(() => {
      const requestAdapter = GPU.prototype.requestAdapter;
      GPU.prototype.requestAdapter = async function (...args) {
        const adapter = await requestAdapter.apply(this, args);
        if (adapter) {
          const info = { vendor: 'test', architecture: '', device: '', description: 'a GPU the test calls hardware', isFallbackAdapter: false };
          Object.defineProperty(adapter, 'info', { value: info });
          Object.defineProperty(adapter, 'isFallbackAdapter', { value: false });
        }
        return adapter;
      };
    });
    // Which backend drew the first frame: the 4 small steps can be over before a poll sees them.
    await page.addInitScript(() => {
      window.addEventListener('gendi-frame', () => { window.__firstFrameBackend ??= window.gendi.backend; });
    });
    await page.goto(`${server.url}?count=1&digit=-1&sampler=ddim&steps=4&seed=5`);
    assert.notEqual(await waitLoaded(page), 'error', await page.evaluate(() => window.gendi.error));
    // Started by itself: nothing was clicked.
    await page.waitForFunction(() => window.gendi.lastFrame?.step === 4, null, { timeout: 120_000, polling: 100 });
    assert.equal(await page.evaluate(() => window.__firstFrameBackend), 'cpu', 'the first run ran on the CPU');
    await page.waitForFunction(() => window.gendi.backend === 'webgpu', null, { timeout: 300_000, polling: 200 });
    assert.equal(await page.evaluate(() => window.gendi.state), 'ready');
    assert.match(await page.textContent('#notice'), /runs from now on use WebGPU/);
    assert.equal(await page.textContent('#stat-backend'), 'WebGPU');
    await page.click('#start');
    await page.waitForFunction(() => window.gendi.state === 'ready' && window.gendi.lastFrame?.step === 4, null, { timeout: 240_000, polling: 100 });
    assert.equal(await page.evaluate(() => window.gendi.framesDrawn), 4);
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});

// Draws a "0" on the pad with the mouse API: an ellipse of pointer moves while the button is down.
async function drawZero(page) {
  await page.locator('#pad').scrollIntoViewIfNeeded();
  const box = await page.locator('#pad').boundingBox();
  const at = (a) => [box.x + box.width * (0.5 + 0.2 * Math.sin(a)), box.y + box.height * (0.5 - 0.3 * Math.cos(a))];
  await page.mouse.move(...at(0));
  await page.mouse.down();
  for (let i = 1; i <= 40; i++) await page.mouse.move(...at((2 * Math.PI * i) / 40));
  await page.mouse.up();
}

// What `gendi classify` (the evaluation classifier) reads in a 28×28 PNG given as a data URL.
function classify(dataUrl) {
  const file = join(mkdtempSync(join(scratch, 'digit-')), 'digit.png');
  writeFileSync(file, Buffer.from(dataUrl.split(',')[1], 'base64'));
  const out = execFileSync(process.env.GENDI_BIN ?? 'gendi',
    ['classify', file, '--classifier', join(ROOT, 'tests', 'fixtures', 'classifier.bpk')], { encoding: 'utf8' });
  return Number(out.match(/: (\d) \(/)[1]);
}

test('a digit drawn with the mouse, denoised from t = 600 as a 3, ends as a 3', { timeout: 300_000 }, async () => {
  const { context, page, external, consoleErrors } = await openPage(browser, server);
  try {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${server.url}?autostart=0&backend=cpu&count=1&digit=3&seed=7`);
    assert.equal(await waitLoaded(page), 'ready', await page.evaluate(() => window.gendi.error));
    assert.ok(await page.isDisabled('#denoise'), 'nothing to denoise before a drawing');
    await drawZero(page);
    assert.equal(await page.evaluate(() => window.gendi.pad.isEmpty()), false, 'the strokes left ink');
    assert.equal(classify(await padImage(page, '#pad')), 0, 'the drawing reads as a 0');

    await page.$eval('#from-t', (el) => { el.value = '600'; el.dispatchEvent(new Event('input')); });
    await page.waitForFunction(() => window.gendi.noisedPreview?.t === 600, null, { timeout: 60_000 });
    assert.match(await page.textContent('#from-t-info'), /x_t = 0\.160·x₀ \+ 0\.987·ε/);

    await page.evaluate(() => {
      window.__firstT = null;
      window.addEventListener('gendi-frame', (e) => { window.__firstT ??= e.detail.t; });
    });
    await page.click('#denoise');
    await page.waitForFunction(() => window.gendi.state === 'ready' && window.gendi.lastFrame?.step === window.gendi.lastFrame?.total,
      null, { timeout: 240_000, polling: 250 });
    // DPM-Solver++ over 20 steps (…, 649, 599, …) starts at the first timestep ≤ 600.
    assert.equal(await page.evaluate(() => window.__firstT), 599);
    assert.equal(classify(await padImage(page, '#xt', 1)), 3, 'the result reads as the 3 asked for');
    await page.screenshot({ path: join(ARTIFACTS, 'drawing-1280.png'), fullPage: true });
    await page.setViewportSize({ width: 375, height: 800 });
    await page.screenshot({ path: join(ARTIFACTS, 'drawing-375.png'), fullPage: true });
    assert.deepEqual(external, []);
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});

// The 28×28 digit at (offset, offset) of a canvas, as a PNG data URL.
function padImage(page, selector, offset = 0) {
  return page.$eval(selector, (canvas, offset) => {
    const out = document.createElement('canvas');
    out.width = 28; out.height = 28;
    out.getContext('2d').drawImage(canvas, offset, offset, 28, 28, 0, 0, 28, 28);
    return out.toDataURL('image/png');
  }, offset);
}

test('inpainting: a masked part is redrawn and every other pixel is kept exactly', { timeout: 300_000 }, async () => {
  const { context, page, consoleErrors } = await openPage(browser, server);
  try {
    await page.goto(`${server.url}?autostart=0&backend=cpu&count=1&digit=1&seed=3`);
    assert.equal(await waitLoaded(page), 'ready', await page.evaluate(() => window.gendi.error));
    await drawZero(page);
    // Mask the right half of the 0 with one stroke of the mask brush.
    await page.check('input[name=brush][value=mask]');
    const box = await page.locator('#pad').boundingBox();
    await page.mouse.move(box.x + box.width * 0.7, box.y + box.height * 0.15);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.7, box.y + box.height * 0.85, { steps: 20 });
    await page.mouse.up();
    const { ink, mask } = await page.evaluate(() => ({ ink: Array.from(window.gendi.pad.pixels()), mask: Array.from(window.gendi.pad.mask() ?? []) }));
    assert.equal(mask.length, 784, 'the mask brush painted a mask');
    const masked = mask.filter((m) => m).length;
    assert.ok(masked > 50 && masked < 400, `${masked} pixels masked`);

    await page.$eval('#from-t', (el) => { el.value = el.max; el.dispatchEvent(new Event('input')); });
    await page.click('#denoise');
    await page.waitForFunction(() => window.gendi.state === 'ready' && window.gendi.lastFrame?.step === window.gendi.lastFrame?.total,
      null, { timeout: 240_000, polling: 250 });
    const result = await page.$eval('#xt', (canvas) =>
      Array.from(canvas.getContext('2d').getImageData(1, 1, 28, 28).data.filter((_, i) => i % 4 === 0)));
    let changed = 0;
    for (let i = 0; i < 784; i++) {
      if (mask[i]) changed += Math.abs(result[i] - ink[i]) > 32;
      else assert.equal(result[i], ink[i], `pixel ${i} outside the mask changed`);
    }
    assert.ok(changed > 0, 'the masked part was redrawn');
    // "Use the result" puts it on the pad, unmasked, for another round.
    await page.click('#pad-use-result');
    assert.deepEqual(await page.evaluate(() => Array.from(window.gendi.pad.pixels())), result);
    assert.equal(await page.evaluate(() => window.gendi.pad.mask()), null);
    await page.screenshot({ path: join(ARTIFACTS, 'inpainting.png'), fullPage: true });
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});

// Runs the page's current settings to the end; returns the x_t canvas after each step.
// Keeps the x_t canvas of every drawn frame in window.__canvases (run in the page, or before it
// loads with addInitScript).
function collectCanvases() {
  window.__canvases = [];
  window.addEventListener('gendi-frame', () => window.__canvases.push(document.getElementById('xt').toDataURL()));
}

// Waits for the run under way to finish; returns its canvases (see collectCanvases).
async function canvasesAtEnd(page) {
  await page.waitForFunction(() => window.gendi.state === 'ready' && window.gendi.lastFrame?.step === window.gendi.lastFrame?.total,
    null, { timeout: 240_000, polling: 250 });
  return page.evaluate(() => window.__canvases);
}

async function runToEnd(page) {
  await page.evaluate(collectCanvases);
  await page.click('#start');
  return canvasesAtEnd(page);
}

test('replay: scrubbing back shows the stored frame, a digit opens its trajectory, the GIF holds every frame, a copied link reproduces the run', { timeout: 400_000 }, async () => {
  const { context, page, consoleErrors } = await openPage(browser, server);
  try {
    await page.goto(`${server.url}?autostart=0&backend=cpu&count=4&digit=-2&seed=11&sampler=dpm-solver&steps=10`);
    assert.equal(await waitLoaded(page), 'ready', await page.evaluate(() => window.gendi.error));
    const canvases = await runToEnd(page);
    assert.equal(canvases.length, 10);

    // Scrub back to the third stored frame: the canvas shows what step 3 drew.
    await page.$eval('#scrub', (el) => { el.value = '2'; el.dispatchEvent(new Event('input')); });
    assert.equal(await page.evaluate(() => window.gendi.shownFrame.step), 3);
    assert.equal(await page.$eval('#xt', (c) => c.toDataURL()), canvases[2]);
    assert.match(await page.textContent('#scrub-value'), /step 3 \/ 10/);

    // Click the second digit (top right of a 2 × 2 grid): its trajectory strip opens.
    const box = await page.locator('#xt').boundingBox();
    await page.mouse.click(box.x + box.width * 0.75, box.y + box.height * 0.25);
    assert.equal(await page.evaluate(() => window.gendi.trajectory.digit), 1);
    assert.ok(await page.isVisible('#trajectory'));

    // Save GIF: the wasm module encodes it; Chromium's own decoder reads it back.
    await page.click('#save-gif');
    await page.waitForFunction(() => window.gendi.gif, null, { timeout: 60_000 });
    const gif = await page.evaluate(async () => {
      const decoder = new ImageDecoder({ data: window.gendi.gif, type: 'image/gif' });
      await decoder.tracks.ready;
      const count = decoder.tracks.selectedTrack.frameCount;
      const frames = [];
      for (const index of [2, count - 1]) {
        const { image } = await decoder.decode({ frameIndex: index });
        const canvas = new OffscreenCanvas(image.displayWidth, image.displayHeight);
        canvas.getContext('2d').drawImage(image, 0, 0);
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
        image.close();
        frames.push({ width: data.width, data: Array.from(data.data) });
      }
      return { count, frames };
    });
    assert.equal(gif.count, 10, 'one GIF frame per stored frame');
    for (const [i, index] of [[0, 2], [1, 9]]) {
      await page.$eval('#scrub', (el, v) => { el.value = String(v); el.dispatchEvent(new Event('input')); }, index);
      const shown = await page.$eval('#xt', (c) => ({ width: c.width, data: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data) }));
      const frame = gif.frames[i];
      assert.equal(frame.width, shown.width * 4, 'the GIF is the canvas at 4×');
      let differing = 0;
      for (let y = 0; y < shown.data.length / 4 / shown.width; y++) {
        for (let x = 0; x < shown.width; x++) {
          const a = shown.data[4 * (y * shown.width + x)];
          const b = frame.data[4 * (4 * y * frame.width + 4 * x)];
          if (a !== b) differing += 1;
        }
      }
      assert.equal(differing, 0, `GIF frame ${index} differs from the canvas in ${differing} pixels`);
    }

    // Copy link, open it elsewhere, run: the same x_t at every step.
    await page.click('#copy-link');
    const link = await page.inputValue('#share-url');
    assert.match(link, /seed=11/);
    assert.match(link, /sampler=dpm-solver/);
    // Opened, the link starts the run by itself (a page opened without ?autostart=0 does).
    const other = await context.newPage();
    await other.addInitScript(collectCanvases);
    await other.goto(link);
    assert.equal(await waitLoaded(other), 'running');
    const again = await canvasesAtEnd(other);
    assert.deepEqual(again, canvases, 'the link reproduces every x_t of the run');
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});

// axe-core's WCAG 2 A and AA rules on the page as it is now: a list of "rule: element" strings.
async function accessibilityViolations(page) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ path: AXE_PATH });
  return page.evaluate(async () => {
    const { violations } = await window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa'] });
    return violations.flatMap((v) => v.nodes.map((n) => `${v.id}: ${n.target.join(' ')} (${v.help})`));
  });
}

test('accessible: no axe-core violations at 1280 and 375 px, no sideways scrolling on a phone, every control by keyboard', { timeout: 300_000 }, async () => {
  const { context, page, consoleErrors } = await openPage(browser, server);
  try {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${server.url}?autostart=0&backend=cpu&count=4&steps=5`);
    assert.equal(await waitLoaded(page), 'ready');
    await page.click('#pad-real');
    await page.waitForFunction(() => window.gendi.realDigit, null, { timeout: 30_000 });
    assert.deepEqual(await accessibilityViolations(page), []);

    // Keyboard only: Enter on Generate runs; then Tab reaches every control, each with a
    // visible focus (the replay controls are enabled once a run has frames).
    await page.focus('#start');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => window.gendi.state === 'ready' && window.gendi.lastFrame?.step === 5, null, { timeout: 120_000 });
    await page.focus('#backend');
    const reached = new Set(['backend']);
    for (let i = 0; i < 40; i++) {
      await page.keyboard.press('Tab');
      const focus = await page.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return null; // past the last control, before the first
        return { id: el.id || el.name || el.value, outline: getComputedStyle(el).outlineStyle };
      });
      if (!focus) continue;
      reached.add(focus.id);
      assert.notEqual(focus.outline, 'none', `${focus.id} shows no focus`);
    }
    for (const id of ['backend', 'count', 'digit', 'guidance', 'interval', 'sampler', 'steps', 'seed', 'start', 'play', 'scrub', 'speed',
      'save-png', 'save-gif', 'copy-link', 'brush', 'pad-undo', 'pad-clear', 'pad-use-result', 'pad-real', 'from-t', 'denoise']) {
      assert.ok(reached.has(id), `Tab never reaches ${id} (reached ${[...reached].join(', ')})`);
    }
    assert.deepEqual(await accessibilityViolations(page), [], 'after a run');

    await page.setViewportSize({ width: 375, height: 800 });
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 375), 'the page scrolls sideways at 375 px');
    assert.deepEqual(await accessibilityViolations(page), []);
    await page.screenshot({ path: join(ARTIFACTS, 'page-375.png'), fullPage: true });
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});

test('touch: a finger drawing on the pad leaves ink and does not scroll the page', { timeout: 120_000 }, async () => {
  const { context, page } = await openPage(browser, server);
  try {
    await page.setViewportSize({ width: 375, height: 800 });
    await page.goto(`${server.url}?autostart=0&backend=cpu`);
    assert.equal(await waitLoaded(page), 'ready');
    await page.locator('#pad').scrollIntoViewIfNeeded();
    const box = await page.locator('#pad').boundingBox();
    const scrollBefore = await page.evaluate(() => window.scrollY);
    // Raw touch events through the DevTools protocol: touchstart, moves down the middle, touchend.
    const cdp = await context.newCDPSession(page);
    const point = (f) => [{ x: box.x + box.width / 2, y: box.y + box.height * f }];
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: point(0.2) });
    for (let f = 0.25; f <= 0.8; f += 0.05) await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: point(f) });
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
    await page.waitForFunction(() => !window.gendi.pad.isEmpty(), null, { timeout: 5_000 });
    const inked = await page.evaluate(() => window.gendi.pad.pixels().filter((v) => v > 128).length);
    assert.ok(inked > 20, `only ${inked} pixels inked by the stroke`);
    assert.equal(await page.evaluate(() => window.scrollY), scrollBefore, 'drawing scrolled the page');
    assert.ok(await page.isEnabled('#denoise'));
  } finally {
    await context.close();
  }
});

// Serves worker.js with `prefix` in front of it (e.g. hooks a test needs inside the worker).
async function patchWorker(page, prefix) {
  await page.route('**/worker.js', async (route) => {
    const response = await route.fetch();
    await route.fulfill({ response, body: prefix + (await response.text()), headers: { ...response.headers(), 'content-type': 'text/javascript' } });
  });
}

test('WebGPU device lost mid-run: the page says so, "Switch to the CPU backend" works and the next run finishes', { timeout: 300_000 }, async () => {
  const { context, page, consoleErrors } = await openPage(browser, server);
  try {
    // Keep the worker's GPUDevice where the test can reach it.
    await patchWorker(page, `const requestDevice = GPUAdapter.prototype.requestDevice;
GPUAdapter.prototype.requestDevice = async function (...args) { const device = await requestDevice.apply(this, args); self.__gpuDevice = device; return device; };
`);
    await page.goto(`${server.url}?autostart=0&backend=webgpu&count=1&digit=-1&sampler=ddim&steps=200&seed=1`);
    assert.equal(await waitLoaded(page), 'ready', await page.evaluate(() => window.gendi.error));
    await page.click('#start');
    await page.waitForFunction(() => window.gendi.framesDrawn >= 2, null, { timeout: 120_000 });
    const [worker] = page.workers();
    assert.ok(await worker.evaluate(() => Boolean(self.__gpuDevice)), 'the hook saw the GPU device');
    await worker.evaluate(() => self.__gpuDevice.destroy());
    await page.waitForFunction(() => window.gendi.state === 'error', null, { timeout: 120_000 });
    assert.match(await page.textContent('#error'), /GPU|device/i);
    await page.screenshot({ path: join(ARTIFACTS, 'device-lost.png') });
    await page.getByRole('button', { name: 'Switch to the CPU backend' }).click();
    assert.equal(await waitLoaded(page), 'ready');
    assert.equal(await page.evaluate(() => window.gendi.backend), 'cpu');
    await page.fill('#steps', '5');
    await page.click('#start');
    await page.waitForFunction(() => window.gendi.state === 'ready' && window.gendi.lastFrame?.step === 5, null, { timeout: 120_000 });
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});

test('a worker whose WebAssembly module crashed is started again by Retry', { timeout: 300_000 }, async () => {
  const { context, page, consoleErrors } = await openPage(browser, server);
  try {
    // With self.__crashNext set, the next start() traps the way a panicking wasm module does:
    // the panic hook's message on console.error, then a RuntimeError ("unreachable").
    // Every module is patched: the CPU backend runs from pkg-threads/ on this isolated server.
    await patchWorker(page, `import { Denoiser as Gpu } from './pkg/gendi.js';
import { Denoiser as Single } from './pkg-cpu/gendi.js';
import { Denoiser as Pooled } from './pkg-threads/gendi.js';
for (const PatchedDenoiser of [Gpu, Single, Pooled]) {
  const realStart = PatchedDenoiser.prototype.start;
  PatchedDenoiser.prototype.start = function (...args) {
    if (self.__crashNext) { console.error('panicked at src/web.rs: a test crash'); throw new WebAssembly.RuntimeError('unreachable'); }
    return realStart.apply(this, args);
  };
}
`);
    await page.goto(`${server.url}?autostart=0&backend=cpu&count=1&steps=5`);
    assert.equal(await waitLoaded(page), 'ready');
    await page.workers()[0].evaluate(() => { self.__crashNext = true; });
    await page.click('#start');
    await page.waitForFunction(() => window.gendi.state === 'error', null, { timeout: 30_000 });
    assert.match(await page.textContent('#error'), /crashed: panicked at src\/web.rs: a test crash/);
    await page.getByRole('button', { name: 'Retry' }).click();
    assert.equal(await waitLoaded(page), 'ready');
    await page.click('#start');
    await page.waitForFunction(() => window.gendi.state === 'ready' && window.gendi.lastFrame?.step === 5, null, { timeout: 120_000 });
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});
