//! The page's entry point: a `Denoiser` that JavaScript builds from the manifest and weight
//! bytes, then steps through the reverse process. It only converts types and reports errors;
//! the model, schedule and samplers are the shared code.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::{Device, Tensor, TensorData};
use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE, normalize_to_neg_one_to_one, to_pixels};
use crate::model::UNet;
use crate::pipeline::{Digits, Generation, GenerationRequest, noised};
use crate::sampler::{Sampler, SamplerKind};
use crate::schedule::{NoiseSchedule, Objective};
use crate::weights::{self, Manifest};

/// What [`Denoiser::start`] takes from the page.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StartOptions {
    count: u32,
    /// A JS number: a whole number up to 2^53 − 1.
    seed: f64,
    /// 0–9, [`MIXED_DIGITS`] or [`UNCONDITIONAL`].
    digit: i32,
    guidance: f32,
    /// Guidance only at steps with σ_t at most this (the pipeline's default if absent;
    /// `Infinity` guides every step).
    #[serde(
        default = "crate::pipeline::default_guidance_sigma_max",
        rename = "guidanceSigmaMax"
    )]
    guidance_sigma_max: f32,
    /// `{ kind: "ddim", steps, eta }`, `{ kind: "dpm-solver", steps }`, `{ kind: "ddpm" }`, …:
    /// the shared [`SamplerKind`], checked by [`Sampler::new`].
    sampler: SamplerKind,
    /// Start from this image noised to `t` instead of from pure noise (SDEdit).
    #[serde(default)]
    from: Option<StartImage>,
}

/// A drawing or a real digit to start the reverse process from.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StartImage {
    /// 28 × 28 8-bit pixels, row by row (0 black background, 255 ink).
    pixels: Vec<u8>,
    /// The noise level to start from, 0 ≤ t < T.
    t: usize,
    /// Inpainting: 28 × 28 values, nonzero where the model redraws the image; elsewhere the
    /// result keeps `pixels` exactly.
    #[serde(default)]
    redraw: Option<Vec<u8>>,
}

/// `digit` for [`Denoiser::start`]: no label (the unconditional model, no guidance).
pub const UNCONDITIONAL: i32 = -1;
/// `digit` for [`Denoiser::start`]: a balanced mix of 0–9, with guidance.
pub const MIXED_DIGITS: i32 = -2;

#[wasm_bindgen]
extern "C" {
    /// WebCrypto's `crypto.subtle.digest`; throws where there is none (outside a secure context).
    #[wasm_bindgen(catch, js_namespace = ["crypto", "subtle"], js_name = digest)]
    fn subtle_digest(algorithm: &str, data: &Uint8Array) -> Result<js_sys::Promise, JsValue>;
}

/// The SHA-256 of `bytes` in lowercase hex, by the browser's WebCrypto; `None` where it is not
/// available, for the caller to compute it itself.
async fn browser_sha256(bytes: &Uint8Array) -> Option<String> {
    let promise = subtle_digest("SHA-256", bytes).ok()?;
    let digest = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    Some(weights::lowercase_hex(&Uint8Array::new(&digest).to_vec()))
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// `initThreadPool(n)` for the page: starts `n` Web Workers that share this module's memory and
/// run the CPU backend's rayon work. Only the multithreaded module has it (`wasm-threads`).
#[cfg(feature = "wasm-threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// The threads the CPU backend computes on: the pool's size in the multithreaded module, 1 in
/// the single-threaded one.
#[wasm_bindgen]
pub fn threads() -> usize {
    crate::kernels::threads()
}

/// The format version of manifests this build reads (the page checks it before downloading).
#[wasm_bindgen(js_name = formatVersion)]
pub fn format_version() -> u32 {
    weights::FORMAT_VERSION
}

/// An animated GIF of a run: `frames` is the stored x_t frames one after another, each `count`
/// digits of 28 × 28 8-bit pixels, drawn in the page's grid layout at `zoom`.
#[wasm_bindgen(js_name = encodeGif)]
pub fn encode_gif(
    frames: Vec<u8>,
    count: u32,
    zoom: u32,
    delay_ms: u16,
) -> Result<Vec<u8>, JsError> {
    let per_frame = count as usize * IMAGE_PIXELS;
    if count == 0 || frames.is_empty() || frames.len() % per_frame != 0 {
        return Err(JsError::new(&format!(
            "{} bytes of frames are not whole frames of {count} digits",
            frames.len()
        )));
    }
    let frames: Vec<Vec<u8>> = frames.chunks(per_frame).map(<[u8]>::to_vec).collect();
    crate::animation::encode_gif(&frames, count as usize, zoom as usize, delay_ms)
        .map_err(|e| JsError::new(&e))
}

/// Parses and checks a manifest; throws with a readable message if this build cannot use it.
#[wasm_bindgen(js_name = checkManifest)]
pub fn check_manifest(json: &str) -> Result<JsValue, JsError> {
    let manifest = weights::parse_manifest(json).map_err(|e| JsError::new(&e.to_string()))?;
    to_js(&ManifestInfo {
        parameters: manifest.parameters,
        bytes: manifest.weights.bytes,
        sha256: manifest.weights.sha256,
        file: manifest.weights.file,
        training_steps: manifest.training_steps,
        timesteps: manifest.schedule.timesteps,
        objective: manifest.schedule.objective,
        conditional: manifest.model.num_classes > 0,
    })
}

struct Inner {
    model: UNet,
    manifest: Manifest,
    device: Device,
    generation: Option<Generation>,
}

#[cfg(feature = "wgpu")]
thread_local! {
    /// The WebGPU device and adapter name, initialised once per page: burn keeps one runtime per
    /// device, so a second initialisation would fail.
    static WEBGPU: RefCell<Option<(Device, String)>> = const { RefCell::new(None) };
}

#[cfg(feature = "wgpu")]
async fn webgpu_device() -> Result<(Device, String), JsError> {
    if let Some(found) = WEBGPU.with(|cell| cell.borrow().clone()) {
        return Ok(found);
    }
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| JsError::new(&format!("WebGPU could not start: {e}")))?;
    let info = setup.adapter.get_info();
    let name = if info.name.is_empty() {
        format!("{:?}", info.backend)
    } else {
        info.name.clone()
    };
    WEBGPU.with(|cell| *cell.borrow_mut() = Some((device.clone(), name.clone())));
    Ok((device, name))
}

fn cpu_name() -> String {
    match threads() {
        1 => "CPU (wasm SIMD, 1 thread)".to_string(),
        n => format!("CPU (wasm SIMD, {n} threads)"),
    }
}

#[wasm_bindgen]
pub struct Denoiser {
    inner: Rc<RefCell<Inner>>,
    backend: String,
    adapter: String,
}

#[wasm_bindgen]
impl Denoiser {
    /// Verifies `weights` against `manifest_json` (length, SHA-256, config, version) and builds
    /// the U-Net on `backend`: "webgpu" or "cpu".
    pub async fn create(
        manifest_json: String,
        weights_bytes: Uint8Array,
        backend: String,
    ) -> Result<Denoiser, JsError> {
        let manifest =
            weights::parse_manifest(&manifest_json).map_err(|e| JsError::new(&e.to_string()))?;
        let (device, adapter) = match backend.as_str() {
            #[cfg(feature = "wgpu")]
            "webgpu" => webgpu_device().await?,
            #[cfg(not(feature = "wgpu"))]
            "webgpu" => {
                return Err(JsError::new(
                    "this is a CPU module (pkg-cpu or pkg-threads), built without WebGPU: load pkg/gendi.js for WebGPU",
                ));
            }
            "cpu" => (Device::flex(), cpu_name()),
            other => {
                return Err(JsError::new(&format!(
                    "unknown backend {other:?}: use \"webgpu\" or \"cpu\""
                )));
            }
        };
        let digest = browser_sha256(&weights_bytes).await;
        let bytes = weights_bytes.to_vec();
        let digest = digest.unwrap_or_else(|| weights::sha256_hex(&bytes));
        let model = weights::load_model_with_digest(&manifest, &bytes, digest, &device)
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(Denoiser {
            inner: Rc::new(RefCell::new(Inner {
                model,
                manifest,
                device,
                generation: None,
            })),
            backend,
            adapter,
        })
    }

    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Starts a new reverse process with the page's [`StartOptions`], e.g.
    /// `{ count: 16, seed: 7, digit: -2, guidance: 1, sampler: { kind: "dpm-solver", steps: 20 } }`.
    /// Returns the number of steps it will take.
    pub fn start(&self, options: JsValue) -> Result<u32, JsError> {
        let options: StartOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| JsError::new(&format!("the generation options: {e}")))?;
        let mut inner = self
            .inner
            .try_borrow_mut()
            .map_err(|_| JsError::new("a step is still running"))?;
        let StartOptions {
            count,
            seed,
            digit,
            guidance,
            guidance_sigma_max,
            sampler: kind,
            from,
        } = options;
        if !(1..=64).contains(&count) {
            return Err(JsError::new(
                "the number of digits must be between 1 and 64",
            ));
        }
        let seed = seed_from(seed)?;
        let digits = match digit {
            UNCONDITIONAL => Digits::Unconditional,
            MIXED_DIGITS => Digits::Mixed,
            d if d >= 0 => Digits::Only(d as usize),
            d => return Err(JsError::new(&format!("{d} is not a digit"))),
        };
        digits
            .check(inner.manifest.model.num_classes)
            .map_err(|e| JsError::new(&e.to_string()))?;
        let sampler = Sampler::new(NoiseSchedule::new(inner.manifest.schedule), kind)
            .map_err(|e| JsError::new(&e.to_string()))?;
        let request = GenerationRequest {
            guidance_sigma_max,
            ..GenerationRequest::new(count as usize, seed, digits, guidance)
        };
        request.validate().map_err(|e| JsError::new(&e))?;
        let generation = match from {
            Some(StartImage { pixels, t, redraw }) => {
                let timesteps = inner.manifest.schedule.timesteps;
                if t >= timesteps {
                    return Err(JsError::new(&format!(
                        "the starting noise level t is {t}, allowed 0 to {}",
                        timesteps - 1
                    )));
                }
                let image = image_tensor(&pixels, count as usize, &inner.device, |p| {
                    normalize_to_neg_one_to_one(p)
                })?;
                match redraw {
                    Some(redraw) => {
                        // 1 where the pixel is kept, 0 where it is redrawn.
                        let keep = image_tensor(&redraw, count as usize, &inner.device, |r| {
                            f32::from(u8::from(r == 0))
                        })?;
                        Generation::inpaint(sampler, &request, image, keep, t)
                    }
                    None => Generation::from_image(sampler, &request, image, t),
                }
            }
            None => Generation::new(sampler, &request, &inner.device),
        };
        let total = generation.total_steps() as u32;
        inner.generation = Some(generation);
        Ok(total)
    }

    /// Runs the U-Net once on a batch of `batch` blank images and reads the result back, so that
    /// WebGPU compiles its shaders (and the CPU backend fills its buffer pools) while the page
    /// still shows its progress bar: the first step the user sees then runs at full speed.
    /// Resolves to the milliseconds it took.
    #[wasm_bindgen(js_name = warmUp)]
    pub fn warm_up(&self, batch: u32) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            if !(1..=128).contains(&batch) {
                return Err(js_error("the warm-up batch must be between 1 and 128"));
            }
            let started = js_sys::Date::now();
            let output = {
                let state = inner
                    .try_borrow()
                    .map_err(|_| js_error("a step is still running"))?;
                let batch = batch as usize;
                let t = state.manifest.schedule.timesteps - 1;
                let x = Tensor::<4>::zeros([batch, 1, IMAGE_SIDE, IMAGE_SIDE], &state.device);
                state.model.forward(x, &vec![t; batch], &vec![None; batch])
            };
            read(output).await?;
            Ok(JsValue::from_f64(js_sys::Date::now() - started))
        })
    }

    /// The forward process for the noise-level slider: `pixels` (28 × 28, 8-bit) noised to `t`
    /// with the ε that a generation seeded `seed` starts from, as `{ xt, signal, noise, snr }`:
    /// x_t = signal · x_0 + noise · ε, snr = signal²/noise². Computed on the CPU: it is one small
    /// image.
    pub fn noised(&self, pixels: Vec<u8>, t: u32, seed: f64) -> Result<JsValue, JsError> {
        let inner = self
            .inner
            .try_borrow()
            .map_err(|_| JsError::new("a step is still running"))?;
        let schedule = NoiseSchedule::new(inner.manifest.schedule);
        let t = t as usize;
        if t >= schedule.len() {
            return Err(JsError::new(&format!(
                "t is {t}, allowed 0 to {}",
                schedule.len() - 1
            )));
        }
        let image = image_tensor(&pixels, 1, &Device::flex(), normalize_to_neg_one_to_one)?;
        let xt = noised(&schedule, image, seed_from(seed)?, t)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| JsError::new(&format!("{e:?}")))?;
        let (signal, noise) = (schedule.signal_scale[t], schedule.noise_scale[t]);
        to_js(&Noised {
            xt: Pixels(to_pixels(&xt)),
            signal,
            noise,
            snr: (signal / noise).powi(2),
        })
    }

    /// Runs one reverse step. Resolves to `{ t, step, total, xt, x0 }` with `xt`, `x0` as 8-bit
    /// pixels (count × 28 × 28), or to `null` when the process is finished.
    pub fn step(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut guard = inner
                .try_borrow_mut()
                .map_err(|_| js_error("a step is still running"))?;
            let state = &mut *guard;
            let generation = state
                .generation
                .as_mut()
                .ok_or_else(|| js_error("call start() first"))?;
            let Some(t) = generation.next_timestep() else {
                return Ok(JsValue::NULL);
            };
            let output = generation
                .step(&state.model)
                .map_err(|e| js_error(&e.to_string()))?;
            let output = output.expect("a step remained");
            let xt = read(output.prev_sample).await?;
            let x0 = read(output.pred_x0).await?;
            let frame = Frame {
                t,
                step: generation.steps_done(),
                total: generation.total_steps(),
                xt: Pixels(to_pixels(&xt)),
                x0: Pixels(to_pixels(&x0)),
                xt_raw: xt,
            };
            to_js(&frame).map_err(JsValue::from)
        })
    }
}

/// A seed from JavaScript: a whole number that a double holds exactly.
fn seed_from(seed: f64) -> Result<u64, JsError> {
    if seed.is_finite() && seed >= 0.0 && seed.fract() == 0.0 && seed <= 9_007_199_254_740_991.0 {
        Ok(seed as u64)
    } else {
        Err(JsError::new(
            "the seed must be a whole number between 0 and 2^53 - 1",
        ))
    }
}

/// 28 × 28 8-bit values mapped by `value` (pixels to [−1, 1], a mask to 0/1) as `count` copies
/// of one image, shaped (count, 1, 28, 28).
fn image_tensor(
    pixels: &[u8],
    count: usize,
    device: &Device,
    value: impl Fn(u8) -> f32,
) -> Result<Tensor<4>, JsError> {
    if pixels.len() != IMAGE_PIXELS {
        return Err(JsError::new(&format!(
            "a starting image has {IMAGE_PIXELS} pixels (28 × 28), got {}",
            pixels.len()
        )));
    }
    let values: Vec<f32> = pixels
        .iter()
        .map(|&p| value(p))
        .collect::<Vec<_>>()
        .repeat(count);
    Ok(Tensor::from_data(
        TensorData::new(values, [count, 1, IMAGE_SIDE, IMAGE_SIDE]),
        device,
    ))
}

async fn read(tensor: Tensor<4>) -> Result<Vec<f32>, JsValue> {
    let data = tensor.into_data_async().await.map_err(|e| {
        js_error(&format!(
            "reading the result back from the device failed (was the GPU lost?): {e:?}"
        ))
    })?;
    data.try_to_vec::<f32>()
        .map_err(|e| js_error(&format!("{e:?}")))
}

fn js_error(message: &str) -> JsValue {
    JsError::new(message).into()
}

/// A typed value as a plain JavaScript object (serde-wasm-bindgen).
fn to_js(value: &impl serde::Serialize) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::new())
        .map_err(|e| JsError::new(&e.to_string()))
}

/// 8-bit pixels that reach JavaScript as a `Uint8Array` (transferable, drawn as they are).
struct Pixels(Vec<u8>);

impl serde::Serialize for Pixels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

/// What `checkManifest` tells the page about weights before it downloads them.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestInfo {
    parameters: usize,
    bytes: usize,
    sha256: String,
    file: String,
    training_steps: u64,
    timesteps: usize,
    objective: Objective,
    conditional: bool,
}

/// One reverse step for the page: x_t and x̂_0 as 8-bit pixels (count × 28 × 28), and x_t's
/// values for the tests that compare it with the native sampler.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Frame {
    t: usize,
    step: usize,
    total: usize,
    xt: Pixels,
    x0: Pixels,
    xt_raw: Vec<f32>,
}

/// The noise-level slider's preview.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Noised {
    xt: Pixels,
    /// a_t and b_t of x_t = a_t x_0 + b_t ε.
    signal: f64,
    noise: f64,
    snr: f64,
}
