//! Burnpack weights paired with a manifest that matches their length and SHA-256 (so every
//! input reaches the burnpack parser), for a small network. The first byte picks the stored
//! precision the manifest announces.
#![no_main]
use gendi::model::UNetConfig;
use gendi::weights::{StoredDType, load_model, manifest_for};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let dtype = if which % 2 == 0 {
        StoredDType::F16
    } else {
        StoredDType::F32
    };
    let config = UNetConfig::tiny();
    let parameters = config.parameter_count().unwrap_or(0);
    let manifest = manifest_for(
        &config,
        Default::default(),
        parameters,
        1,
        true,
        bytes,
        dtype,
    );
    let _ = load_model(&manifest, bytes, &burn::tensor::Device::flex());
});
