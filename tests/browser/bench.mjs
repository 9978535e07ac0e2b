// The page's speed in headless Chromium, printed as JSON: ms per reverse step (U-Net forward +
// sampler step + read-back) at batch 1 and 16 on WebGPU (SwiftShader here) and on the CPU
// backend (on every core, and as cpu1 on one thread), the time from navigation to the first drawn
// step (and that of a plain first and second visit), and the gzipped download by part.
//
// The CPU backend is measured as its visitors have it, in a browser without a GPU (software
// compositing); WebGPU on SwiftShader. Plain visits run in both: the SwiftShader browser
// composites the page with OpenGL on the CPU, which no visitor does and which slows the model on
// two cores (see harness.mjs), so its figure is an upper bound.
import { readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { serveWww, launchBrowser, launchProfile, openPage, waitLoaded, WWW } from './harness.mjs';

const STEPS = Number(process.env.BENCH_STEPS ?? 4);
// BENCH_BACKENDS=cpu skips SwiftShader's minutes per step when only the CPU backend is of interest.
// cpu1: the CPU backend capped at one thread (?threads=1), to compare with the pool.
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'webgpu,cpu,cpu1').split(',');

async function measure(browser, server, name, count) {
  // Requests go straight to the server, as a visitor's do (see openPage).
  const { context, page } = await openPage(browser, server, { intercept: false });
  try {
    const backend = name === 'cpu1' ? 'cpu&threads=1' : name;
    const url = `${server.url}?backend=${backend}&count=${count}&digit=-1&sampler=ddim&steps=1000&seed=1&autostart`;
    // Record from the very start: on the CPU a step takes milliseconds.
    await page.addInitScript((steps) => {
      window.__bench = { ms: [], at: [] };
      window.addEventListener('gendi-frame', (event) => {
        const b = window.__bench;
        if (b.ms.length <= steps) { b.ms.push(event.detail.ms); b.at.push(performance.now()); }
        if (b.ms.length === steps + 1) document.getElementById('stop').click();
      });
    }, STEPS);
    await page.goto(url);
    if ((await waitLoaded(page)) === 'error') throw new Error(await page.evaluate(() => window.gendi.error));
    await page.waitForFunction((steps) => window.__bench.ms.length >= steps + 1, STEPS, { timeout: 600_000, polling: 100 });
    const result = await page.evaluate(() => ({ ms: window.__bench.ms, at: window.__bench.at }));
    // The first step used to include shader compilation; the page now warms up before it says
    // ready, and first_step_ms shows whether that worked. The mean is over the rest.
    const timed = result.ms.slice(1);
    return {
      ms_per_step: timed.reduce((a, b) => a + b, 0) / timed.length,
      first_step_ms: result.ms[0],
      // What a visitor sees: from one drawn step to the next on the page, so messaging, drawing
      // and the worker's pause between steps count too.
      wall_ms_per_step: (result.at[result.at.length - 1] - result.at[0]) / (result.at.length - 1),
      navigation_to_first_step_ms: result.at[0],
      warm_up_ms: await page.evaluate(() => window.gendi.warmUpMs),
      load_phases_ms: await page.evaluate(() => window.gendi.loadPhases),
      adapter: await page.evaluate(() => window.gendi.adapter),
      threads: await page.evaluate(() => window.gendi.threads),
    };
  } finally {
    await context.close();
  }
}

// What a visitor who types the address sees: the page without settings (the automatic backend,
// 16 digits 0–9 with guidance, DPM-Solver++ 20), which starts by itself. Twice in one profile: a
// first visit, then a second one with whatever the browser kept (HTTP cache, compiled code, the
// weights in the Cache API). Milliseconds from navigation to the first drawn step, per visit.
async function plainVisits(server, gpu, visits = 2) {
  const dir = mkdtempSync(join(tmpdir(), 'gendi-bench-profile-'));
  const context = await launchProfile(dir, { gpu });
  const result = { navigation_to_first_step_ms: [] };
  try {
    for (let v = 0; v < visits; v++) {
      const page = await context.newPage();
      await page.addInitScript(() => {
        window.__first = null;
        window.addEventListener('gendi-frame', () => {
          if (window.__first === null) { window.__first = performance.now(); document.getElementById('stop').click(); }
        });
      });
      await page.goto(server.url);
      await page.waitForFunction(() => window.__first !== null || window.gendi?.state === 'error', null, { timeout: 600_000, polling: 100 });
      const r = await page.evaluate(() => ({ first: window.__first, error: window.gendi.error, backend: window.gendi.backend, threads: window.gendi.threads }));
      if (r.first === null) throw new Error(r.error);
      result.navigation_to_first_step_ms.push(r.first);
      Object.assign(result, { backend: r.backend, threads: r.threads });
      await page.close();
    }
  } finally {
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

function gzipped(paths) {
  return paths.reduce((sum, p) => sum + gzipSync(readFileSync(p), { level: 9 }).length, 0);
}

const server = await serveWww();
const browsers = {};
const browserFor = async (backend) => {
  const gpu = backend === 'webgpu';
  browsers[gpu] ??= await launchBrowser({ gpu });
  return browsers[gpu];
};
async function closeBrowsers() {
  for (const [gpu, browser] of Object.entries(browsers)) {
    delete browsers[gpu];
    await browser.close();
  }
}
try {
  const report = { steps_timed: STEPS, cpu_browser: 'no GPU (--disable-gpu): composited in software' };
  for (const backend of BACKENDS) {
    for (const count of [1, 16]) {
      const r = await measure(await browserFor(backend), server, backend, count);
      report[`${backend}_ms_per_step_b${count}`] = r.ms_per_step;
      report[`${backend}_wall_ms_per_step_b${count}`] = r.wall_ms_per_step;
      report[`${backend}_first_step_ms_b${count}`] = r.first_step_ms;
      report[`${backend}_warm_up_ms_b${count}`] = r.warm_up_ms;
      if (count === 16) {
        report[`${backend}_navigation_to_first_step_ms`] = r.navigation_to_first_step_ms;
        // Milliseconds from navigation to the end of each loading phase: worker_started, module
        // (wasm compiled and, isolated, its thread pool started), weights (downloaded meanwhile),
        // model (built), warm_up.
        report[`${backend}_load_phases_ms`] = r.load_phases_ms;
      }
      report[`${backend}_adapter`] = r.adapter;
      report[`${backend}_threads`] = r.threads;
    }
  }
  // Plain visits launch their own browsers, with a profile kept between visits.
  await closeBrowsers();
  const plain = await plainVisits(server, false);
  report.plain_visit_navigation_to_first_step_ms = plain.navigation_to_first_step_ms;
  report.plain_visit_backend = plain.backend;
  report.plain_visit_threads = plain.threads;
  const swiftshader = await plainVisits(server, true);
  report.plain_visit_swiftshader_compositing_navigation_to_first_step_ms = swiftshader.navigation_to_first_step_ms;
  // A first visit loads one of three modules: pkg/ (WebGPU), pkg-cpu/ (the CPU on one thread) or
  // pkg-threads/ (the CPU on every core, with wasm-bindgen-rayon's worker script).
  const page = ['main.js', 'pad.js', 'worker.js', 'index.html', 'style.css'].map((f) => join(WWW, f));
  const jsOf = (dir) => readdirSync(dir, { recursive: true }).filter((f) => f.endsWith('.js')).map((f) => join(dir, f));
  const weights = readdirSync(join(WWW, 'weights')).map((f) => join(WWW, 'weights', f));
  report.gzip_bytes_wasm = gzipped([join(WWW, 'pkg', 'gendi_bg.wasm')]);
  report.gzip_bytes_wasm_cpu = gzipped([join(WWW, 'pkg-cpu', 'gendi_bg.wasm')]);
  report.gzip_bytes_wasm_threads = gzipped([join(WWW, 'pkg-threads', 'gendi_bg.wasm')]);
  report.gzip_bytes_js_html_css = gzipped([...page, ...jsOf(join(WWW, 'pkg'))]);
  report.gzip_bytes_js_html_css_cpu = gzipped([...page, ...jsOf(join(WWW, 'pkg-cpu'))]);
  report.gzip_bytes_js_html_css_threads = gzipped([...page, ...jsOf(join(WWW, 'pkg-threads'))]);
  report.gzip_bytes_weights = gzipped(weights);
  report.gzip_bytes_total = report.gzip_bytes_wasm + report.gzip_bytes_js_html_css + report.gzip_bytes_weights;
  report.gzip_bytes_total_cpu = report.gzip_bytes_wasm_cpu + report.gzip_bytes_js_html_css_cpu + report.gzip_bytes_weights;
  report.gzip_bytes_total_threads = report.gzip_bytes_wasm_threads + report.gzip_bytes_js_html_css_threads + report.gzip_bytes_weights;
  console.log(JSON.stringify(report, null, 2));
} finally {
  await closeBrowsers();
  await server.close();
}
