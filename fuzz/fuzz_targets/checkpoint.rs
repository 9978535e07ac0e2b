//! A training checkpoint, as `gendi train --resume` and `--checkpoint` read it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("gendi-fuzz-ckpt-{}.gendi", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = gendi::native::checkpoint::Checkpoint::load(&path);
});
