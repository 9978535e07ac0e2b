//! weights/manifest.json as the page and `gendi sample --weights` read it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gendi::weights::parse_manifest(text);
    }
});
