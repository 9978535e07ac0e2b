//! One cfg for "this build runs work on several threads": `threads` is set natively (rayon's
//! pool) and in the page's multithreaded module (feature `wasm-threads`), and unset in the
//! single-threaded wasm module. The kernels test `cfg(threads)` instead of the target.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(threads)");
    let wasm = std::env::var("CARGO_CFG_TARGET_FAMILY")
        .map(|families| families.split(',').any(|family| family == "wasm"))
        .unwrap_or(false);
    let wasm_threads = std::env::var_os("CARGO_FEATURE_WASM_THREADS").is_some();
    if !wasm || wasm_threads {
        println!("cargo::rustc-cfg=threads");
    }
    if wasm && wasm_threads {
        // The pool's Web Workers instantiate the module on the page's memory: wasm-ld must make
        // it shared and imported (2 GiB at most), and export the thread-local storage symbols
        // that wasm-bindgen's thread support initialises in each worker.
        for arg in [
            "--shared-memory",
            "--import-memory",
            "--max-memory=2147483648",
            "--export=__wasm_init_tls",
            "--export=__tls_size",
            "--export=__tls_align",
            "--export=__tls_base",
        ] {
            println!("cargo::rustc-link-arg-cdylib={arg}");
        }
    }
}
