//! The page's entry point: a `Denoiser` that JavaScript builds from the manifest and weight
//! bytes, then steps through the reverse process. It only converts types and reports errors;
//! the model, schedule and samplers are the shared code.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::{Device, Tensor};
use js_sys::{Float32Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::data::to_pixels;
use crate::model::UNet;
use crate::pipeline::{Digits, Generation, GenerationRequest};
use crate::sampler::{DdpmVariance, Sampler, SamplerKind};
use crate::schedule::NoiseSchedule;
use crate::weights::{self, Manifest};

/// `digit` for [`Denoiser::start`]: no label (the unconditional model, no guidance).
pub const UNCONDITIONAL: i32 = -1;
/// `digit` for [`Denoiser::start`]: a balanced mix of 0–9, with guidance.
pub const MIXED_DIGITS: i32 = -2;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The format version of manifests this build reads (the page checks it before downloading).
#[wasm_bindgen(js_name = formatVersion)]
pub fn format_version() -> u32 {
    weights::FORMAT_VERSION
}

/// Parses and checks a manifest; throws with a readable message if this build cannot use it.
#[wasm_bindgen(js_name = checkManifest)]
pub fn check_manifest(json: &str) -> Result<JsValue, JsError> {
    let manifest = weights::parse_manifest(json).map_err(|e| JsError::new(&e.to_string()))?;
    let info = Object::new();
    set(&info, "parameters", manifest.parameters as f64);
    set(&info, "bytes", manifest.weights.bytes as f64);
    set(&info, "sha256", manifest.weights.sha256.as_str());
    set(&info, "file", manifest.weights.file.as_str());
    set(&info, "trainingSteps", manifest.training_steps as f64);
    set(&info, "timesteps", manifest.schedule.timesteps as f64);
    set(&info, "conditional", manifest.model.num_classes > 0);
    Ok(info.into())
}

struct Inner {
    model: UNet,
    manifest: Manifest,
    device: Device,
    generation: Option<Generation>,
}

thread_local! {
    /// The WebGPU device and adapter name, initialised once per page: burn keeps one runtime per
    /// device, so a second initialisation would fail.
    static WEBGPU: RefCell<Option<(Device, String)>> = const { RefCell::new(None) };
}

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
            "webgpu" => webgpu_device().await?,
            "cpu" => (Device::flex(), "CPU (wasm SIMD)".to_string()),
            other => {
                return Err(JsError::new(&format!(
                    "unknown backend {other:?}: use \"webgpu\" or \"cpu\""
                )));
            }
        };
        let bytes = weights_bytes.to_vec();
        let model = weights::load_model(&manifest, &bytes, &device)
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

    /// Starts a new reverse process. `digit`: 0–9 draws that digit, [`MIXED_DIGITS`] (−2) a mix
    /// of all ten, both with guidance; [`UNCONDITIONAL`] (−1) draws without a label.
    /// `sampler` is "ddpm" or "ddim".
    /// Returns the number of steps it will take.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &self,
        count: u32,
        seed: f64,
        digit: i32,
        guidance: f32,
        sampler: &str,
        steps: u32,
        eta: f64,
    ) -> Result<u32, JsError> {
        let mut inner = self
            .inner
            .try_borrow_mut()
            .map_err(|_| JsError::new("a step is still running"))?;
        if !(1..=64).contains(&count) {
            return Err(JsError::new(
                "the number of digits must be between 1 and 64",
            ));
        }
        if !(seed.is_finite()
            && seed >= 0.0
            && seed.fract() == 0.0
            && seed <= 9_007_199_254_740_991.0)
        {
            return Err(JsError::new(
                "the seed must be a whole number between 0 and 2^53 - 1",
            ));
        }
        let digits = match digit {
            UNCONDITIONAL => Digits::Unconditional,
            MIXED_DIGITS => Digits::Mixed,
            d if d >= 0 => Digits::Only(d as usize),
            d => return Err(JsError::new(&format!("{d} is not a digit"))),
        };
        digits
            .check(inner.manifest.model.num_classes)
            .map_err(|e| JsError::new(&e.to_string()))?;
        if !guidance.is_finite() || guidance < 0.0 {
            return Err(JsError::new("the guidance scale must be a number >= 0"));
        }
        let kind = match sampler {
            "ddpm" => SamplerKind::Ddpm {
                variance: DdpmVariance::PosteriorBeta,
            },
            "ddim" => SamplerKind::Ddim {
                steps: steps as usize,
                eta,
            },
            other => {
                return Err(JsError::new(&format!(
                    "unknown sampler {other:?}: use \"ddpm\" or \"ddim\""
                )));
            }
        };
        let sampler = Sampler::new(NoiseSchedule::new(inner.manifest.schedule), kind)
            .map_err(|e| JsError::new(&e.to_string()))?;
        let request = GenerationRequest {
            count: count as usize,
            seed: seed as u64,
            digits,
            guidance,
        };
        request.validate().map_err(|e| JsError::new(&e))?;
        let generation = Generation::new(sampler, &request, &inner.device);
        let total = generation.total_steps() as u32;
        inner.generation = Some(generation);
        Ok(total)
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
            let frame = Object::new();
            set(&frame, "t", t as f64);
            set(&frame, "step", generation.steps_done() as f64);
            set(&frame, "total", generation.total_steps() as f64);
            let xt = read(output.prev_sample).await?;
            let x0 = read(output.pred_x0).await?;
            set(&frame, "xt", Uint8Array::from(to_pixels(&xt).as_slice()));
            set(&frame, "x0", Uint8Array::from(to_pixels(&x0).as_slice()));
            set(&frame, "xtRaw", Float32Array::from(xt.as_slice()));
            Ok(frame.into())
        })
    }
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

fn set(object: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(object, &JsValue::from_str(key), &value.into());
}
