//! Export → load round trip, and every way a weights file can be wrong.

mod common;

use burn::module::Module;
use gendi::model::UNetConfig;
use gendi::native::export::{load_exported, write_weights};
use gendi::schedule::ScheduleConfig;
use gendi::weights::{self, FORMAT_VERSION, StoredDType, WeightsError, parse_manifest};

fn exported() -> (weights::Manifest, Vec<u8>, gendi::model::UNet) {
    let config = UNetConfig::default();
    let model = config.init(&common::device());
    let bytes = weights::model_to_bytes(&model).unwrap();
    let manifest = weights::manifest_for(
        &config,
        ScheduleConfig::default(),
        model.num_params(),
        12,
        true,
        &bytes,
        StoredDType::F32,
    );
    (manifest, bytes, model)
}

#[test]
fn export_then_load_gives_bit_identical_outputs() {
    let (manifest, bytes, model) = exported();
    let (_scratch, dir) = common::unmade_dir("weights-roundtrip", "weights");
    write_weights(&manifest, &bytes, &dir).unwrap();
    let (loaded_manifest, loaded) = load_exported(&dir, &common::device()).unwrap();
    assert_eq!(loaded_manifest, manifest);
    let mut rng = gendi::rng::NoiseRng::new(1);
    let x = rng.normal_tensor([2, 1, 28, 28], &common::device());
    let a = common::values(model.forward(x.clone(), &[10, 900], &[Some(4), None]));
    let b = common::values(loaded.forward(x, &[10, 900], &[Some(4), None]));
    assert_eq!(a, b, "outputs must be bit-identical");
}

/// The default model stored as `dtype` through the exporter's files and loaded back.
struct Stored {
    model: gendi::model::UNet,
    loaded: gendi::model::UNet,
    bytes: usize,
    bytes32: usize,
    dir: std::path::PathBuf,
    /// Removes `dir` when the test is done with it.
    _scratch: tempfile::TempDir,
}

fn stored_as(dtype: StoredDType, name: &str) -> Stored {
    let (manifest32, bytes32, model) = exported();
    let bytes = weights::model_to_bytes_as(&model, dtype).unwrap();
    let manifest = weights::manifest_for(
        &manifest32.model,
        manifest32.schedule,
        manifest32.parameters,
        12,
        true,
        &bytes,
        dtype,
    );
    let (scratch, dir) = common::unmade_dir(&format!("weights-{name}"), "weights");
    write_weights(&manifest, &bytes, &dir).unwrap();
    let (loaded_manifest, loaded) = load_exported(&dir, &common::device()).unwrap();
    assert_eq!(loaded_manifest.weights.dtype, dtype);
    Stored {
        model,
        loaded,
        bytes: bytes.len(),
        bytes32: bytes32.len(),
        dir,
        _scratch: scratch,
    }
}

/// The network's output on fixed inputs (seed 2): two images, t = 10 and 900, labelled and not.
fn outputs(model: &gendi::model::UNet) -> Vec<f32> {
    let x = gendi::rng::NoiseRng::new(2).normal_tensor([2, 1, 28, 28], &common::device());
    common::values(model.forward(x, &[10, 900], &[Some(4), None]))
}

#[test]
fn int8_export_loads_as_the_int8_rounded_model_at_under_three_tenths_of_the_size() {
    let stored = stored_as(StoredDType::Int8, "int8");
    // 8 bits for the matrices and kernels below full resolution; f16 for the vectors, the
    // label embedding and every parameter of the full-resolution modules.
    let bytes = std::fs::read(stored.dir.join(weights::WEIGHTS_FILE)).unwrap();
    let mut store =
        burn::store::BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(bytes)));
    let full_resolution = stored.model.full_resolution_modules();
    let mut eight_bit = 0;
    for (name, tensor) in burn::store::ModuleStore::get_all_tensors(&mut store).unwrap() {
        let kept = tensor.shape.len() < 2
            || name.starts_with("label_embedding.")
            || full_resolution
                .iter()
                .any(|m| name.starts_with(&format!("{m}.")));
        match tensor.dtype {
            burn::tensor::DType::F16 => assert!(kept, "{name} should be 8-bit"),
            burn::tensor::DType::QFloat(_) => {
                assert!(!kept, "{name} should be f16");
                eight_bit += 1;
            }
            other => panic!("{name} stored as {other:?}"),
        }
    }
    assert!(eight_bit > 20, "{eight_bit} 8-bit parameters");
    assert!(
        stored.bytes < stored.bytes32 * 3 / 10,
        "{} vs {} bytes",
        stored.bytes,
        stored.bytes32
    );
    let rounded = weights::rounded_to(&stored.model, StoredDType::Int8);
    assert_eq!(
        outputs(&stored.loaded),
        outputs(&rounded),
        "loading 8-bit weights gives the 8-bit-rounded model exactly"
    );
    // Rounding to 8 bits moves the output by about a percent of its range.
    let (exact, eight) = (outputs(&stored.model), outputs(&stored.loaded));
    let range = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = common::max_abs_diff(&exact, &eight);
    assert!(diff > 0.0 && diff < 0.03 * range, "{diff} of {range}");
}

#[test]
fn int8_weights_load_as_burns_own_dequantization_gives_them() {
    use burn::module::{ModuleMapper, Param};
    use burn::tensor::{DType, Tensor};
    struct BurnDequantize;
    impl ModuleMapper for BurnDequantize {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| match t.dtype() {
                DType::QFloat(_) => t.dequantize(),
                _ => t.cast(burn::tensor::FloatDType::F32),
            })
        }
    }
    let (_, _, model) = exported();
    let bytes = weights::model_to_bytes_as(&model, StoredDType::Int8).unwrap();
    let record =
        burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.clone()))
            .unwrap();
    let by_burn = UNetConfig::default()
        .init(&common::device())
        .try_load_record(record)
        .unwrap()
        .map(&mut BurnDequantize);
    let loaded =
        weights::model_from_bytes(&UNetConfig::default(), &bytes, &common::device()).unwrap();
    assert_eq!(outputs(&loaded), outputs(&by_burn));
}

#[test]
fn quantized_weights_in_another_scheme_are_refused_not_a_panic() {
    // burn panics when it widens some quantized tensors: a file that was not written by
    // `gendi export` is checked first. Here one scale for a whole tensor instead of one per row.
    use burn::module::{ModuleMapper, Param};
    use burn::tensor::Tensor;
    use burn::tensor::quantization::{QuantScheme, ScaleDtype};
    struct PerTensor;
    impl ModuleMapper for PerTensor {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| t.quantize_dynamic(&QuantScheme::default().per_tensor(ScaleDtype::F32)))
        }
    }
    let config = UNetConfig::tiny();
    let model = config.init(&common::device()).map(&mut PerTensor);
    let bytes = model.into_record().into_bytes().unwrap().to_vec();
    let err = weights::model_from_bytes(&config, &bytes, &common::device()).expect_err("refused");
    assert!(
        err.to_string()
            .contains("GENDI reads f32, f16 and 8-bit weights"),
        "{err}"
    );
}

#[test]
fn f16_export_loads_as_the_f16_rounded_model_at_half_the_size() {
    let stored = stored_as(StoredDType::F16, "f16");
    assert!(
        stored.bytes < stored.bytes32 * 6 / 10,
        "{} vs {} bytes",
        stored.bytes,
        stored.bytes32
    );
    let rounded = weights::rounded_to(&stored.model, StoredDType::F16);
    assert_eq!(
        outputs(&stored.loaded),
        outputs(&rounded),
        "loading f16 weights gives the f16-rounded model exactly"
    );
    let drift = common::max_abs_diff(&outputs(&stored.loaded), &outputs(&stored.model));
    assert!(
        drift > 0.0 && drift < 1e-2,
        "f16 storage moves outputs by {drift}"
    );
}

#[test]
fn manifest_records_length_hash_and_version() {
    let (manifest, bytes, _) = exported();
    assert_eq!(manifest.format_version, FORMAT_VERSION);
    assert_eq!(manifest.weights.bytes, bytes.len());
    assert_eq!(manifest.weights.sha256.len(), 64);
    let json = serde_json::to_string(&manifest).unwrap();
    assert_eq!(parse_manifest(&json).unwrap(), manifest);
}

#[test]
fn truncated_weights_are_an_error() {
    let (manifest, bytes, _) = exported();
    let cut = &bytes[..bytes.len() / 2];
    let err = weights::load_model(&manifest, cut, &common::device())
        .err()
        .unwrap();
    assert!(matches!(err, WeightsError::Length { .. }), "{err}");
    assert!(err.to_string().contains("truncated"));
    // Even with a manifest that agrees with the cut bytes, decoding fails cleanly.
    let lying = weights::manifest_for(
        &manifest.model,
        manifest.schedule,
        manifest.parameters,
        0,
        true,
        cut,
        StoredDType::F32,
    );
    let err = weights::load_model(&lying, cut, &common::device())
        .err()
        .unwrap();
    assert!(matches!(err, WeightsError::Record(_)), "{err}");
}

#[test]
fn a_flipped_byte_fails_the_checksum() {
    let (manifest, mut bytes, _) = exported();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let err = weights::load_model(&manifest, &bytes, &common::device())
        .err()
        .unwrap();
    assert!(matches!(err, WeightsError::Checksum { .. }), "{err}");
}

#[test]
fn a_manifest_whose_config_does_not_match_is_an_error() {
    let (manifest, bytes, _) = exported();
    let mut wrong = manifest.clone();
    wrong.model.base_channels = 64;
    let err = weights::load_model(&wrong, &bytes, &common::device())
        .err()
        .unwrap();
    assert!(matches!(err, WeightsError::Record(_)), "{err}");
    let mut wrong = manifest;
    wrong.model.blocks_per_level = 1;
    let err = weights::load_model(&wrong, &bytes, &common::device())
        .err()
        .unwrap();
    assert!(matches!(err, WeightsError::Record(_)), "{err}");
}

#[test]
fn unknown_versions_and_broken_manifests_are_errors() {
    let (manifest, _, _) = exported();
    let mut value = serde_json::to_value(&manifest).unwrap();
    value["format_version"] = serde_json::json!(FORMAT_VERSION + 1);
    let err = parse_manifest(&value.to_string()).unwrap_err();
    assert_eq!(err, WeightsError::UnsupportedVersion(FORMAT_VERSION + 1));
    assert!(matches!(
        parse_manifest("{\"format_version\": 1"),
        Err(WeightsError::Manifest(_))
    ));
    let mut value = serde_json::to_value(&manifest).unwrap();
    value["model"]["groups"] = serde_json::json!(5);
    assert!(matches!(
        parse_manifest(&value.to_string()),
        Err(WeightsError::UnsupportedModel(_))
    ));
}

#[test]
fn a_missing_manifest_is_an_error_that_names_the_file() {
    let (_scratch, dir) = common::unmade_dir("weights-missing", "weights");
    let err = load_exported(&dir, &common::device()).err().unwrap();
    assert!(err.to_string().contains("manifest.json"), "{err}");
}

/// The shipped manifest with one field edited, as someone handing the page or the CLI a
/// manifest might: each is refused by parse_manifest, before any allocation, with a message
/// naming the field.
#[test]
fn hostile_manifest_numbers_are_refused_before_anything_is_built() {
    let shipped = common::shipped_manifest();
    let base: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    parse_manifest(&shipped).expect("the shipped manifest is valid");
    let cases: [(&[&str], serde_json::Value, &str); 10] = [
        (
            &["weights", "bytes"],
            serde_json::json!(1_000_000_000_000u64),
            "weights.bytes",
        ),
        (
            &["model", "num_classes"],
            serde_json::json!(1_000_000_000_000u64),
            "model.num_classes",
        ),
        (
            &["model", "embedding_dim"],
            serde_json::json!(10_000_000_000u64),
            "model.embedding_dim",
        ),
        (
            &["model", "base_channels"],
            serde_json::json!(3_200_000),
            "model.base_channels",
        ),
        (
            &["model", "channel_mults"],
            serde_json::json!([1, 2, 3000]),
            "model.channel_mults",
        ),
        (
            &["model", "blocks_per_level"],
            serde_json::json!(1_000_000),
            "model.blocks_per_level",
        ),
        (
            &["schedule", "timesteps"],
            serde_json::json!(1_000_000_000_000u64),
            "schedule.timesteps",
        ),
        (
            &["schedule", "beta_schedule", "beta_end"],
            serde_json::json!(1.5),
            "beta_end",
        ),
        (
            &["schedule", "beta_schedule", "beta_start"],
            serde_json::json!(-0.1),
            "beta_start",
        ),
        (&["parameters"], serde_json::json!(2_029_504), "parameters"),
    ];
    for (path, value, named) in cases {
        let mut edited = base.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut node = &mut edited;
        for key in parents {
            node = &mut node[*key];
        }
        node[*last] = value.clone();
        let err = parse_manifest(&edited.to_string())
            .expect_err(&format!("{path:?} = {value} was accepted"));
        assert!(
            err.to_string().contains(named),
            "{path:?} = {value}: the error does not name {named}: {err}"
        );
    }
}

#[test]
fn a_guide_is_any_model_of_the_same_images_and_noise() {
    let model = UNetConfig::default();
    let schedule = ScheduleConfig::default();
    let guide = |config: &UNetConfig, schedule: ScheduleConfig| {
        weights::manifest_for(config, schedule, 1, 500, true, &[0], StoredDType::F32)
    };
    // The same network at an earlier step, or a smaller unconditional one: both guide.
    let smaller = UNetConfig {
        base_channels: model.base_channels / 2,
        num_classes: 0,
        ..model.clone()
    };
    for config in [&model, &smaller] {
        assert_eq!(
            weights::check_guide(&model, &schedule, &guide(config, schedule)),
            Ok(())
        );
    }
    // Another objective or number of steps predicts something else for the same x_t.
    let flow = ScheduleConfig {
        objective: gendi::schedule::Objective::Flow,
        ..schedule
    };
    let shorter = ScheduleConfig {
        timesteps: 500,
        ..schedule
    };
    for other in [flow, shorter] {
        assert_eq!(
            weights::check_guide(&model, &schedule, &guide(&model, other)),
            Err(WeightsError::Guide)
        );
    }
    // Other images.
    let larger = UNetConfig {
        image_size: 32,
        ..model.clone()
    };
    assert_eq!(
        weights::check_guide(&model, &schedule, &guide(&larger, schedule)),
        Err(WeightsError::Guide)
    );
}
