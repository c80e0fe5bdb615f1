//! Keeps the committed C header in step with the Rust sources and the
//! package version: regenerates it with cbindgen, fails if it differs.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    // Cargo.toml's version is the only source of the header's.
    config.after_includes = Some(format!(
        "\n/* The version of sslasync this header belongs to (sslasync_version()). */\n\
         #define SSLASYNC_VERSION \"{}\"\n{}",
        env!("CARGO_PKG_VERSION"),
        config.after_includes.unwrap_or_default()
    ));
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut fresh);
    let path = root.join("include/sslasync.h");
    if std::env::var_os("SSLASYNC_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write header");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/sslasync.h is stale: run `make header` and commit the result"
    );
}
