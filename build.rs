//! Generates `sys.rs` declarations that `openssl-sys` lacks (the `ASYNC_*`
//! API and constants) from the installed OpenSSL headers, and sets the
//! library's soname, rpath and exported-symbol list.

use std::env;
use std::path::PathBuf;

fn main() {
    // openssl-sys (links = "openssl") tells dependents where the headers are
    // and which version it found; everything here must agree with it.
    let include =
        env::var("DEP_OPENSSL_INCLUDE").expect("openssl-sys did not report its include dir");
    let version =
        env::var("DEP_OPENSSL_VERSION_NUMBER").expect("openssl-sys did not report a version");
    let version = u64::from_str_radix(&version, 16).expect("hex OpenSSL version");
    if version < 0x3000_0000 {
        panic!(
            "sslasync needs OpenSSL 3.0 or later (found {version:#x}): older releases have no \
             async callback in ASYNC_WAIT_CTX"
        );
    }
    println!("cargo:rustc-env=SSLASYNC_BUILT_OPENSSL={version:#x}");
    println!("cargo:rerun-if-env-changed=OPENSSL_DIR");
    println!("cargo:rerun-if-env-changed=OPENSSL_LIB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/exports.map");

    let bindings = bindgen::Builder::default()
        .header_contents(
            "wrapper.h",
            "#include <openssl/async.h>\n#include <openssl/err.h>\n#include <openssl/ssl.h>\n",
        )
        .clang_arg(format!("-I{include}"))
        .allowlist_function("ASYNC_WAIT_CTX_(get|set)_callback")
        .allowlist_function("ASYNC_WAIT_CTX_get_status")
        .allowlist_function("ASYNC_WAIT_CTX_(new|free)")
        .allowlist_function("CRYPTO_(get|set)_ex_data|SSL_CTX_set_ex_data")
        .blocklist_type("CRYPTO_EX_DATA|crypto_ex_data_st")
        .allowlist_type("ASYNC_callback_fn")
        .allowlist_var("ASYNC_STATUS_.*")
        .allowlist_var("ASYNC_(ERR|NO_JOBS|PAUSE|FINISH)")
        .allowlist_var("ERR_LIB_SSL")
        .allowlist_var("ERR_R_(PASSED_NULL_PARAMETER|MALLOC_FAILURE|INTERNAL_ERROR)")
        .allowlist_var("OPENSSL_VERSION_MAJOR")
        .blocklist_type("SSL|SSL_CTX|ssl_st|ssl_ctx_st")
        .opaque_type("async_wait_ctx_st")
        .default_macro_constant_type(bindgen::MacroTypeVariation::Signed)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen over the OpenSSL headers");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("openssl_async.rs");
    bindings.write_to_file(&out).expect("write bindings");

    // Only the cdylib gets the linker flags; the rlib is for cargo's own tests.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsslasync.so.0");
    let map = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/exports.map");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        map.display()
    );
    // A private OpenSSL build (OPENSSL_DIR) must be found at run time without
    // LD_LIBRARY_PATH, or the shim would silently load the system one.
    if let Ok(dir) =
        env::var("OPENSSL_LIB_DIR").or_else(|_| env::var("OPENSSL_DIR").map(|d| format!("{d}/lib")))
    {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,{dir}");
    }
}
