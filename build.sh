#!/usr/bin/env bash
# GENDI's one entry point: set up a fresh Debian machine, build the native CLI and the wasm
# module, serve the page, run every test.
#
#   ./build.sh            set up what is missing, build, serve www/ on http://127.0.0.1:8000
#   ./build.sh test       set up what is missing, build, run the Rust and browser tests
#   ./build.sh setup      install tools, fetch MNIST, build the CLI, www/pkg/ and www/pkg-threads/
#   ./build.sh wasm       rebuild the wasm modules only
#   ./build.sh bench-web  measure the page in headless Chromium (prints JSON)
#
# Heavy build outputs live outside the clone (GENDI_CACHE, default ~/.cache/gendi) so that
# they survive between checkouts; everything still builds from empty caches.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$PWD"
CACHE="${GENDI_CACHE:-$HOME/.cache/gendi}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
WASM_TARGET_DIR="$CACHE/target-wasm"
WASM_THREADS_TARGET_DIR="$CACHE/target-wasm-threads"
NODE_DIR="$CACHE/node"
PORT="${PORT:-8000}"
BINARYEN_VERSION=132
PLAYWRIGHT_VERSION=1.64.1
AXE_VERSION=4.14.1

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

setup_tools() {
  if ! command -v cargo >/dev/null; then
    # No rustup toolchain: Debian's own Rust (1.96) builds both the CLI and the wasm module.
    say "no cargo on PATH: using Debian's rustc-web and cargo-web"
    apt_install rustc-web cargo-web rust-web-src
  fi
  # chromium: browser tests; rustc-web & co: a wasm32 standard library where rustup cannot add it.
  local pkgs=(chromium)
  command -v npm >/dev/null || pkgs+=(nodejs npm)
  rustup_has_wasm || pkgs+=(rustc-web cargo-web rust-web-src)
  apt_install "${pkgs[@]}"
  if [ ! -x "$NODE_DIR/node_modules/.bin/wasm-opt" ] || [ ! -d "$NODE_DIR/node_modules/playwright-core" ] \
    || [ ! -f "$NODE_DIR/node_modules/axe-core/axe.min.js" ]; then
    say "installing binaryen@$BINARYEN_VERSION, playwright-core@$PLAYWRIGHT_VERSION and axe-core@$AXE_VERSION from npm into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    (cd "$NODE_DIR" && [ -f package.json ] || echo '{"private":true}' > package.json)
    (cd "$NODE_DIR" && npm install --silent --no-audit --no-fund "binaryen@$BINARYEN_VERSION" "playwright-core@$PLAYWRIGHT_VERSION" "axe-core@$AXE_VERSION")
  fi
}

rustup_has_wasm() {
  command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' && return 0
  # On a normal machine with network access this installs it; here it fails fast.
  command -v rustup >/dev/null && timeout 60 rustup target add wasm32-unknown-unknown >/dev/null 2>&1
}

build_native() {
  say "building the gendi CLI (release)"
  cargo build --release --bin gendi
}

gendi() { "$CARGO_TARGET_DIR/release/gendi" "$@"; }

fetch_data() {
  gendi data
}

wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

# Builds the crate's library for wasm32 into target directory $1 (the rest: cargo's arguments).
# $BUILD_STD=1 always builds the standard library itself, as the multithreaded module needs (std
# with atomics); without it, a rustup wasm32 target is used where there is one. $WASM_PROFILE:
# the cargo profile (default wasm-release).
cargo_wasm() {
  local dir="$1"; shift
  local WASM_PROFILE="${WASM_PROFILE:-wasm-release}"
  if rustup_has_wasm && [ -z "${BUILD_STD:-}" ]; then
    CARGO_TARGET_DIR="$dir" cargo build --lib --target wasm32-unknown-unknown --profile "$WASM_PROFILE" "$@"
    return
  fi
  # Debian's rustc-web ships the std source: build std for wasm32 ourselves (see README).
  apt_install rustc-web cargo-web rust-web-src
  local lld=""
  command -v rustc >/dev/null && lld="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
  [ -x "$lld" ] || lld="$(command -v rust-lld || command -v wasm-ld || true)"
  if [ -z "$lld" ]; then
    apt_install lld-19
    lld=/usr/lib/llvm-19/bin/wasm-ld
  fi
  PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$lld" CARGO_TARGET_DIR="$dir" \
    /usr/bin/cargo build -Zbuild-std=std,panic_abort --lib --target wasm32-unknown-unknown --profile "$WASM_PROFILE" "$@"
}

# What cargo_wasm wrote: $1 its target directory, $2 the profile (default wasm-release).
wasm_output() {
  echo "$1/wasm32-unknown-unknown/${2:-wasm-release}/gendi.wasm"
}

# wasm-bindgen, then wasm-opt: $1 the cargo output, $2 the page's folder for it, then wasm-opt's
# extra flags. wasm-opt strips what the page does not need (names, producers, target features);
# it optimises only when asked (-Oz for the WebGPU module). On the CPU modules, which LLVM has
# optimised for speed, binaryen's -Oz made them larger gzipped and the first step slower; on the
# WebGPU module it keeps the steps twice as fast (README, "The size of the modules").
bind_wasm() {
  local wasm="$1" out="$2"; shift 2
  rm -rf "$out" && mkdir -p "$out"
  wasm-bindgen --target web --no-typescript --out-dir "$out" "$wasm"
  say "wasm-opt ${*:-(strip only)} on $out (binaryen $BINARYEN_VERSION)"
  "$NODE_DIR/node_modules/.bin/wasm-opt" --enable-reference-types --enable-bulk-memory \
    --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals --enable-multivalue \
    --enable-simd --strip-debug --strip-producers --strip-target-features "$@" \
    "$out/gendi_bg.wasm" -o "$out/gendi_bg.wasm"
  say "$out/gendi_bg.wasm: $(stat -c %s "$out/gendi_bg.wasm") bytes, $(gzip -9 -c "$out/gendi_bg.wasm" | wc -c) gzipped"
}

# Three modules from one crate: www/pkg (WebGPU), www/pkg-cpu (the CPU backend on one thread:
# loads anywhere) and www/pkg-threads (the CPU backend on a pool of Web Workers: needs a
# cross-origin isolated page, which the worker checks before it picks this one). The CPU modules
# leave WebGPU out: with it compiled in, the CPU path measured 4-5x slower (README).
build_wasm() {
  local version; version="$(wasm_bindgen_version)"
  [ -n "$version" ] || die "wasm-bindgen is not in Cargo.lock"
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
    say "installing wasm-bindgen-cli $version (matches Cargo.lock)"
    cargo install --quiet wasm-bindgen-cli --version "$version"
  fi
  say "building the WebGPU module"
  # SIMD128 for burn-flex's CPU kernels in the browser (every current browser has it). Its own
  # profile (Cargo.toml): GENDI's crate for size, as its kernels run on the GPU. burn's fusion
  # (feature `fusion`): fewer, larger shaders.
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128" WASM_PROFILE=wasm-webgpu \
    cargo_wasm "$WASM_TARGET_DIR" --no-default-features --features fusion
  bind_wasm "$(wasm_output "$WASM_TARGET_DIR" wasm-webgpu)" www/pkg -Oz
  say "building the single-threaded CPU module"
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128" \
    cargo_wasm "$WASM_TARGET_DIR" --no-default-features
  bind_wasm "$(wasm_output "$WASM_TARGET_DIR")" www/pkg-cpu
  say "building the multithreaded CPU module (atomics, shared memory)"
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals" \
    BUILD_STD=1 cargo_wasm "$WASM_THREADS_TARGET_DIR" --no-default-features --features wasm-threads
  bind_wasm "$(wasm_output "$WASM_THREADS_TARGET_DIR")" www/pkg-threads --enable-threads
}

wasm_is_stale() {
  local pkg
  for pkg in pkg pkg-cpu pkg-threads; do
    [ -f "www/$pkg/gendi_bg.wasm" ] || return 0
    [ -z "$(find src Cargo.toml Cargo.lock build.rs -newer "www/$pkg/gendi_bg.wasm" -print -quit)" ] || return 0
  done
  return 1
}

setup() {
  setup_tools
  build_native
  fetch_data
  if wasm_is_stale; then build_wasm; fi
  [ -f www/weights/manifest.json ] || die "www/weights/ has no weights: train and run 'gendi export' (see README)"
}

serve() {
  say "serving www/ on http://127.0.0.1:$PORT (Ctrl-C to stop)"
  cd www && exec python3 - "$PORT" <<'PY'
import http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      '.wasm': 'application/wasm', '.js': 'text/javascript', '.mjs': 'text/javascript',
                      '.json': 'application/json', '.bpk': 'application/octet-stream'}
    def end_headers(self):
        self.send_header('Cache-Control', 'no-cache')
        # Cross-origin isolation: SharedArrayBuffer, so the CPU backend runs on every core.
        self.send_header('Cross-Origin-Opener-Policy', 'same-origin')
        self.send_header('Cross-Origin-Embedder-Policy', 'require-corp')
        super().end_headers()
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
PY
}

run_tests() {
  if cargo fmt --version >/dev/null 2>&1; then
    say "formatting (cargo fmt --check)"
    cargo fmt --check || die "the code is not formatted: run cargo fmt"
  else
    say "no rustfmt on this machine: formatting not checked"
  fi
  say "Rust tests (release profile: training steps are too slow unoptimised)"
  cargo test --release
  say "browser tests (headless Chromium, WebGPU on SwiftShader)"
  NODE_PATH="$NODE_DIR/node_modules" GENDI_BIN="$CARGO_TARGET_DIR/release/gendi" node --test tests/browser/
}

case "${1:-serve}" in
  serve) setup; serve ;;
  setup) setup ;;
  test) setup; run_tests ;;
  wasm) setup_tools; build_wasm ;;
  bench-web) setup; NODE_PATH="$NODE_DIR/node_modules" node tests/browser/bench.mjs ;;
  -h|--help|help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (try ./build.sh help)" ;;
esac
