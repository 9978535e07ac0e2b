//! A run directory's loss.csv, as `gendi loss` and `--resume` read it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("gendi-fuzz-loss-{}.csv", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = gendi::native::train::read_loss_csv(&path);
});
