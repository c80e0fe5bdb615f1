//! Build script: bindgen declarations for the `ASYNC_*` API that `openssl-sys`
//! lacks, and the exported-symbol machinery generated from `src/exports.list`.
//!
//! The list is the one source of what the library exports. From it this
//! script writes the linker's version script and the `.symver` directives
//! that give every symbol its version node, and it refuses to build when an
//! item in `src/` asks to be exported without being on the list.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    // openssl-sys (links = "openssl") tells dependents where the headers are
    // and which version it found; everything here must agree with it.
    let include =
        env::var("DEP_OPENSSL_INCLUDE").expect("openssl-sys did not report its include dir");
    let version =
        env::var("DEP_OPENSSL_VERSION_NUMBER").expect("openssl-sys did not report a version");
    let version = u64::from_str_radix(&version, 16).expect("hex OpenSSL version");
    // OpenSSL 1.1.1 has none of the five API functions: the shim provides
    // them itself, under its own node (their callbacks come from wait fds).
    let (node, major, api_node) = match version >> 28 {
        1 if version >= 0x1010_1000 => ("OPENSSL_1_1_0", 1, OWN_NODE),
        3 => ("OPENSSL_3.0.0", 3, "OPENSSL_3.0.0"),
        4 => ("OPENSSL_4.0.0", 4, "OPENSSL_4.0.0"),
        _ => panic!("sslasync supports OpenSSL 1.1.1 and 3.0 to 4.x (found {version:#x})"),
    };
    println!("cargo:rustc-check-cfg=cfg(sslasync_ossl111)");
    if major == 1 {
        println!("cargo:rustc-cfg=sslasync_ossl111");
    }
    println!("cargo:rustc-env=SSLASYNC_OPENSSL_MAJOR={major}");
    println!("cargo:rustc-env=SSLASYNC_API_NODE={api_node}");
    println!("cargo:rerun-if-env-changed=OPENSSL_DIR");
    println!("cargo:rerun-if-env-changed=OPENSSL_LIB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rustc-env=SSLASYNC_OPENSSL_NODE={node}");

    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let exports = read_exports(&root.join("src/exports.list"), node, api_node);
    check_sources(&root.join("src"), &exports);
    write_exports(&out, &exports);
    bindings(&include, &out);

    // Only the cdylib gets the linker flags; cargo's test binaries are no shim.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsslasync.so.0");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        out.join("exports.map").display()
    );
    // A private OpenSSL build (OPENSSL_DIR) must be found at run time without
    // LD_LIBRARY_PATH, or the shim would silently load the system one.
    if let Ok(dir) =
        env::var("OPENSSL_LIB_DIR").or_else(|_| env::var("OPENSSL_DIR").map(|d| format!("{d}/lib")))
    {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,{dir}");
    }
}

/// The shim's own version node.
const OWN_NODE: &str = "SSLASYNC_0";

struct Export {
    name: String,
    node: &'static str,
}

fn read_exports(path: &Path, openssl_node: &'static str, api_node: &'static str) -> Vec<Export> {
    let text = fs::read_to_string(path).expect("src/exports.list");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace();
            let (Some(name), Some(kind), None) = (words.next(), words.next(), words.next()) else {
                panic!("src/exports.list: `{l}` is not `NAME NODE`");
            };
            let node = match kind {
                "openssl" => openssl_node,
                "api" => api_node,
                "sslasync" => OWN_NODE,
                _ => panic!("src/exports.list: unknown node `{kind}` for {name}"),
            };
            Export {
                name: name.to_string(),
                node,
            }
        })
        .collect()
}

/// rustc exports every `#[no_mangle]` item whatever the version script says,
/// so the list is enforced here: the `entry!` macro (entry.rs) is the one
/// place allowed to write the attribute for OpenSSL's functions (and checks
/// its names against the list at compile time); any other `#[no_mangle]`
/// must name one of the shim's own listed functions.
fn check_sources(src: &Path, exports: &[Export]) {
    for file in fs::read_dir(src).expect("src/") {
        let path = file.expect("src entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("source file");
        let lines: Vec<&str> = text.lines().collect();
        let in_macro = path.file_name().and_then(|n| n.to_str()) == Some("entry.rs");
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !(code.contains("no_mangle") || code.contains("export_name")) {
                continue;
            }
            if in_macro && code.trim() == "#[no_mangle]" {
                continue; // the entry! macro's own expansion
            }
            let name = lines[i..]
                .iter()
                .find_map(|l| l.split("fn ").nth(1))
                .and_then(|rest| rest.split('(').next())
                .map(str::trim)
                .unwrap_or("?");
            if !exports.iter().any(|e| e.name == name && e.node == OWN_NODE) {
                panic!(
                    "{}:{}: `{name}` asks to be exported but src/exports.list does not list it \
                     as the shim's own (OpenSSL functions go through entry!)",
                    path.display(),
                    i + 1
                );
            }
        }
    }
}

fn write_exports(out: &Path, exports: &[Export]) {
    let mut map = String::from("/* Generated by build.rs from src/exports.list. */\n");
    let mut nodes: Vec<&str> = Vec::new();
    for e in exports {
        if !nodes.contains(&e.node) {
            nodes.push(e.node);
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        map.push_str(&format!("{node} {{\n  global:\n"));
        for e in exports.iter().filter(|e| e.node == *node) {
            map.push_str(&format!("    {};\n", e.name));
        }
        if i == 0 {
            map.push_str("  local:\n    *;\n");
        }
        map.push_str("};\n");
    }
    fs::write(out.join("exports.map"), map).expect("write exports.map");

    let mut rs = String::from("// Generated by build.rs from src/exports.list.\n\n");
    rs.push_str("/// Every exported symbol with its version node.\n");
    rs.push_str("pub const EXPORTS: &[(&str, &str)] = &[\n");
    for e in exports {
        rs.push_str(&format!("    ({:?}, {:?}),\n", e.name, e.node));
    }
    rs.push_str("];\n\n");
    // The directives name the symbol itself: with them the linker writes the
    // versioned name only (cargo's test binaries have no version script).
    rs.push_str("#[cfg(not(test))]\ncore::arch::global_asm!(\n");
    for e in exports {
        rs.push_str(&format!("    \".symver {0}, {0}@@{1}\",\n", e.name, e.node));
    }
    rs.push_str(");\n");
    fs::write(out.join("exports.rs"), rs).expect("write exports.rs");
}

fn bindings(include: &str, out: &Path) {
    let bindings = bindgen::Builder::default()
        .header_contents(
            "wrapper.h",
            "#include <openssl/async.h>\n#include <openssl/err.h>\n#include <openssl/ssl.h>\n",
        )
        .clang_arg(format!("-I{include}"))
        .allowlist_function("ASYNC_WAIT_CTX_(get|set)_callback")
        .allowlist_function("ASYNC_WAIT_CTX_(get|set)_status")
        .allowlist_function("ASYNC_WAIT_CTX_get_all_fds|SSL_get_all_async_fds")
        .allowlist_function("ASYNC_WAIT_CTX_(new|free)")
        .allowlist_function("CRYPTO_(get|set)_ex_data|SSL_CTX_set_ex_data")
        .allowlist_function("SSL_up_ref")
        .blocklist_type("CRYPTO_EX_DATA|crypto_ex_data_st")
        .allowlist_type("ASYNC_callback_fn")
        .allowlist_var("ASYNC_(ERR|NO_JOBS|PAUSE|FINISH)")
        .allowlist_var("ERR_LIB_SSL")
        .allowlist_var(
            "ERR_R_(PASSED_NULL_PARAMETER|PASSED_INVALID_ARGUMENT|MALLOC_FAILURE|INTERNAL_ERROR)",
        )
        .allowlist_var("SSL_MODE_ASYNC|SSL_CTRL_MODE")
        .blocklist_type("SSL|SSL_CTX|ssl_st|ssl_ctx_st")
        .opaque_type("async_wait_ctx_st")
        .default_macro_constant_type(bindgen::MacroTypeVariation::Signed)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen over the OpenSSL headers");
    bindings
        .write_to_file(out.join("openssl_async.rs"))
        .expect("write bindings");
}
