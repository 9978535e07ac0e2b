//! Deterministic fuzzing of every parser GENDI points at files it did not write: the weights'
//! manifest, MNIST idx files, loss.csv and training checkpoints. Each starts from a real file and
//! runs a fixed budget of mutated copies (bit flips, byte edits, truncations, insertions, and,
//! for JSON, fields set to huge, negative, fractional or wrongly typed values). Every case must end
//! in Ok or an error, never a panic; what is accepted must still be within this build's limits.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::module::Module;
use gendi::data::{parse_idx_images, parse_idx_labels};
use gendi::model::UNetConfig;
use gendi::native::checkpoint::Checkpoint;
use gendi::native::train::{TrainConfig, Trainer, read_loss_csv};
use gendi::rng::NoiseRng;
use gendi::weights::parse_manifest;

/// Cases per parser.
const CASES: usize = 10_000;

/// Values that break parsers: huge, negative, fractional, non-finite spellings, wrong types.
fn hostile_value(rng: &mut NoiseRng) -> serde_json::Value {
    use serde_json::json;
    let values = [
        json!(0),
        json!(-1),
        json!(1_000_000_000_000u64),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1e300),
        json!(-1e300),
        json!(0.5),
        json!(2.5),
        json!("12"),
        json!(null),
        json!(true),
        json!([]),
        json!([1, 2, 3, 4, 5, 6, 7, 8, 9]),
        json!({}),
        json!(4_294_967_296u64),
    ];
    values[rng.below(values.len())].clone()
}

/// Sets a random leaf (or a random new key) of `value` to a hostile value.
fn edit_random_field(value: &mut serde_json::Value, rng: &mut NoiseRng) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() && rng.below(8) != 0 => {
            let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
            edit_random_field(map.get_mut(&key).unwrap(), rng);
        }
        serde_json::Value::Array(items) if !items.is_empty() && rng.below(4) != 0 => {
            let i = rng.below(items.len());
            edit_random_field(&mut items[i], rng);
        }
        serde_json::Value::Object(map) if rng.below(2) == 0 => {
            map.insert("unexpected".into(), hostile_value(rng));
        }
        leaf => *leaf = hostile_value(rng),
    }
}

/// One to four byte-level mutations of `base`.
fn mutate_bytes(base: &[u8], rng: &mut NoiseRng) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len().max(1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = [0u8, 0xff, b'9', b'-', b'"', b'{', 0x80][rng.below(7)];
            }
            2 => bytes.truncate(rng.below(len)),
            3 => {
                let i = rng.below(len);
                let insert: &[u8] = [
                    &b"99999999999999999999"[..],
                    b"-1",
                    b"1e999",
                    b"\x00\x00\x00\xff",
                ][rng.below(4)];
                let at = i.min(bytes.len());
                bytes.splice(at..at, insert.iter().copied());
            }
            4 if bytes.len() > 1 => {
                let i = rng.below(bytes.len() - 1);
                let end = (i + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(i..end);
            }
            _ => {}
        }
    }
    bytes
}

/// Runs `cases` mutated inputs through `check`, reporting the first that panics.
fn fuzz(
    name: &str,
    cases: usize,
    mut input: impl FnMut(&mut NoiseRng) -> Vec<u8>,
    check: impl Fn(&[u8]),
) {
    let mut rng = NoiseRng::new(0x5eed ^ name.len() as u64);
    let mut accepted = 0usize;
    for case in 0..cases {
        let bytes = input(&mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&bytes)));
        if outcome.is_err() {
            let path = std::env::temp_dir().join(format!("gendi-fuzz-{name}-{case}"));
            std::fs::write(&path, &bytes).unwrap();
            panic!(
                "{name}: case {case} panicked; the input is in {}",
                path.display()
            );
        }
        accepted += 1;
    }
    assert_eq!(accepted, cases);
}

#[test]
fn manifest_parser_survives_mutated_manifests() {
    let shipped = common::shipped_manifest().into_bytes();
    let json: serde_json::Value = serde_json::from_slice(&shipped).unwrap();
    fuzz(
        "manifest",
        CASES,
        |rng| {
            if rng.below(2) == 0 {
                let mut edited = json.clone();
                for _ in 0..1 + rng.below(3) {
                    edit_random_field(&mut edited, rng);
                }
                edited.to_string().into_bytes()
            } else {
                mutate_bytes(&shipped, rng)
            }
        },
        |bytes| {
            if let Ok(manifest) = parse_manifest(&String::from_utf8_lossy(bytes)) {
                // Whatever is accepted can be built within the limits.
                let count = manifest.model.parameter_count().expect("counted");
                assert_eq!(count, manifest.parameters);
                assert!(count <= gendi::model::unet::limits::MAX_PARAMETERS);
                assert!(manifest.schedule.validate().is_ok());
            }
        },
    );
}

/// The first `count` test images and labels of real MNIST, as idx files.
fn real_idx(count: usize) -> (Vec<u8>, Vec<u8>) {
    let dir = common::mnist_dir();
    let images = std::fs::read(dir.join("t10k-images-idx3-ubyte")).unwrap();
    let labels = std::fs::read(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let mut image_file = images[..16].to_vec();
    image_file[4..8].copy_from_slice(&(count as u32).to_be_bytes());
    image_file.extend_from_slice(&images[16..16 + count * 784]);
    let mut label_file = labels[..8].to_vec();
    label_file[4..8].copy_from_slice(&(count as u32).to_be_bytes());
    label_file.extend_from_slice(&labels[8..8 + count]);
    (image_file, label_file)
}

#[test]
fn idx_parsers_survive_mutated_mnist_files() {
    let (images, labels) = real_idx(20);
    fuzz(
        "idx-images",
        CASES,
        |rng| mutate_bytes(&images, rng),
        |bytes| {
            if let Ok((pixels, count)) = parse_idx_images(bytes, "fuzz") {
                assert_eq!(pixels.len(), count * 784);
            }
        },
    );
    fuzz(
        "idx-labels",
        CASES,
        |rng| mutate_bytes(&labels, rng),
        |bytes| {
            if let Ok(parsed) = parse_idx_labels(bytes, "fuzz") {
                assert!(parsed.iter().all(|&l| l < 10));
            }
        },
    );
}

#[test]
fn loss_csv_reader_survives_mutated_files() {
    let mut csv = String::from("step,loss,lr\n");
    for step in 1..=40 {
        csv.push_str(&format!("{step},{:.6},0.0002\n", 0.05 + 1.0 / step as f64));
    }
    let scratch = common::scratch_dir("fuzz-loss");
    let path = scratch.path().join("loss.csv");
    fuzz(
        "loss-csv",
        CASES,
        |rng| mutate_bytes(csv.as_bytes(), rng),
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            let _ = read_loss_csv(&path);
        },
    );
}

#[test]
fn checkpoint_loader_survives_mutated_checkpoints() {
    // A real checkpoint of a small network, so that ten thousand copies are quick to write.
    let config = TrainConfig {
        model: UNetConfig::tiny(),
        batch_size: 2,
        ..TrainConfig::default()
    };
    let scratch = common::scratch_dir("fuzz-ckpt");
    let dir = scratch.path();
    let real = dir.join("real.gendi");
    Trainer::new(config, &common::device())
        .unwrap()
        .checkpoint()
        .unwrap()
        .save(&real)
        .unwrap();
    let base = std::fs::read(&real).unwrap();
    Checkpoint::load(&real).expect("the real checkpoint loads");
    // The layout: 8 magic bytes, then four (u64 length, bytes) sections, the JSON state first.
    let state_len = u64::from_le_bytes(base[8..16].try_into().unwrap()) as usize;
    let state: serde_json::Value = serde_json::from_slice(&base[16..16 + state_len]).unwrap();
    let rest = &base[16 + state_len..];
    let path = dir.join("mutated.gendi");
    let input = |rng: &mut NoiseRng| {
        if rng.below(2) == 0 {
            // Most of the file is weights: half the cases edit the state instead.
            let mut edited = state.clone();
            for _ in 0..1 + rng.below(3) {
                edit_random_field(&mut edited, rng);
            }
            let json = edited.to_string().into_bytes();
            let mut bytes = base[..8].to_vec();
            bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
            bytes.extend_from_slice(&json);
            bytes.extend_from_slice(rest);
            bytes
        } else {
            mutate_bytes(&base, rng)
        }
    };
    fuzz("checkpoint", CASES, input, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        if let Ok(checkpoint) = Checkpoint::load(&path) {
            assert!(checkpoint.state.config.model.validate().is_ok());
        }
    });
}

#[test]
fn weights_loader_survives_mutated_burnpack_bytes_with_a_matching_manifest() {
    // A small network's real weights in every stored precision; each mutated copy gets a
    // manifest whose byte count and SHA-256 match it, so every case reaches the burnpack parser
    // and the parameter checks rather than stopping at the hash.
    use gendi::weights::{StoredDType, load_model, manifest_for, model_to_bytes_as};
    let device = common::device();
    let config = UNetConfig::tiny();
    let model = config.init(&device);
    let parameters = model.num_params();
    let originals: Vec<(StoredDType, Vec<u8>)> =
        [StoredDType::F16, StoredDType::F32, StoredDType::Int8]
            .into_iter()
            .map(|dtype| (dtype, model_to_bytes_as(&model, dtype).unwrap()))
            .collect();
    let manifest_of = |bytes: &[u8], dtype| {
        manifest_for(
            &config,
            Default::default(),
            parameters,
            1,
            true,
            bytes,
            dtype,
        )
    };
    for (dtype, bytes) in &originals {
        load_model(&manifest_of(bytes, *dtype), bytes, &device).expect("the real weights load");
    }
    let loaded = std::cell::Cell::new(0usize);
    fuzz(
        "burnpack",
        CASES,
        |rng| {
            // The first byte says which precision's file was mutated.
            let which = rng.below(originals.len());
            let mut input = vec![which as u8];
            input.extend(mutate_bytes(&originals[which].1, rng));
            input
        },
        |input| {
            let (dtype, bytes) = (originals[input[0] as usize].0, &input[1..]);
            if let Ok(loaded_model) = load_model(&manifest_of(bytes, dtype), bytes, &device) {
                // What loads is the network the manifest describes.
                assert_eq!(loaded_model.num_params(), parameters);
                loaded.set(loaded.get() + 1);
            }
        },
    );
    eprintln!(
        "burnpack: {} of {CASES} mutated files still loaded",
        loaded.get()
    );
}
