//! MNIST idx image and label files.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = gendi::data::parse_idx_images(data, "images");
    let _ = gendi::data::parse_idx_labels(data, "labels");
});
