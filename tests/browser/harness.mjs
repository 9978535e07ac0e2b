// Shared by the browser tests and the web benchmark: a static server for www/ on loopback and
// headless Chromium with WebGPU on SwiftShader (flags from shared/TOOLCHAIN.md), or without a GPU.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { join, extname, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// Installed by build.sh into $GENDI_CACHE/node and found through NODE_PATH.
const { chromium } = require('playwright-core');

/** axe-core's browser bundle (installed beside playwright-core), for accessibility checks. */
export const AXE_PATH = require.resolve('axe-core/axe.min.js');

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const WWW = join(ROOT, 'www');
export const ARTIFACTS = join(ROOT, 'tests', 'browser', 'artifacts');

const MIME = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.json': 'application/json', '.wasm': 'application/wasm', '.bpk': 'application/octet-stream', '.png': 'image/png',
};

// The headers that make the page cross-origin isolated, as ./build.sh serves it: the CPU backend
// then runs on a pool of Web Workers.
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

/**
 * Serves www/ on 127.0.0.1 at a free port, cross-origin isolated unless `isolated` is false (a
 * static host without the headers). Resolves to { url, close }.
 */
export function serveWww({ isolated = true } = {}) {
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    let file = join(WWW, path);
    try {
      if ((await stat(file)).isDirectory()) file = join(file, 'index.html');
      const body = await readFile(file);
      res.writeHead(200, {
        'Content-Type': MIME[extname(file)] ?? 'application/octet-stream', 'Cache-Control': 'no-cache',
        ...(isolated ? ISOLATION : {}),
      });
      res.end(body);
    } catch {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ url: `http://127.0.0.1:${server.address().port}/`, close: () => new Promise((r) => server.close(r)) });
  }));
}

export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu', '--use-angle=swiftshader', '--enable-features=Vulkan', '--use-vulkan=swiftshader',
  '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

// A browser as a visitor without a usable GPU has it: no WebGPU adapter, and the page composited
// in software. The flags above composite it with SwiftShader's OpenGL instead, which no visitor
// gets and which, on two cores, took CPU time from the model: drawing every step cost the CPU
// backend's batch-1 step 4-7 ms there, and ~0-2 ms composited in software (README).
const NO_GPU_ARGS = [...CHROMIUM_ARGS.filter((flag) => !/webgpu|swiftshader|Vulkan/.test(flag)), '--disable-gpu'];

/** Chromium's launch options: with WebGPU on SwiftShader, or with no GPU (`gpu: false`). */
function launchOptions(gpu) {
  return {
    executablePath: process.env.CHROMIUM ?? '/usr/lib/chromium/chromium',
    headless: true,
    // GENDI_CHROMIUM_ARGS adds flags for an experiment (e.g. V8's wasm tiering options).
    args: [...(gpu ? CHROMIUM_ARGS : NO_GPU_ARGS), ...(process.env.GENDI_CHROMIUM_ARGS ?? '').split(' ').filter(Boolean)],
  };
}

export async function launchBrowser({ gpu = true } = {}) {
  return chromium.launch(launchOptions(gpu));
}

/**
 * A browser with an ordinary profile in `userDataDir`, kept across its pages like a visitor's
 * (disk caches included), where launchBrowser's contexts are fresh each time. Resolves to the
 * one context.
 */
export async function launchProfile(userDataDir, { gpu = true } = {}) {
  return chromium.launchPersistentContext(userDataDir, launchOptions(gpu));
}

/**
 * A fresh context and page; every request that leaves the test server is recorded and refused.
 * `intercept: false` leaves requests alone, for timings: Playwright's interception sends each
 * request through this process and back, which delayed the page's first drawn step by 0.1–0.4 s.
 * `contextOptions` go to Playwright's browser.newContext (e.g. { reducedMotion: 'reduce' }).
 */
export async function openPage(browser, server, { intercept = true, contextOptions = {} } = {}) {
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  const external = [];
  if (intercept) await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(server.url) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
    external.push(url);
    return route.abort();
  });
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  return { context, page, external, consoleErrors };
}

/** Waits for the page to leave the loading state; returns 'ready', 'running' (autostart) or 'error'. */
export async function waitLoaded(page, timeout = 180_000) {
  await page.waitForFunction(() => ['ready', 'running', 'error'].includes(window.gendi?.state), null, { timeout, polling: 200 });
  return page.evaluate(() => window.gendi.state);
}
