//! What the library exports: the list generated from `src/exports.list`
//! (with the `.symver` directives that version each symbol).

include!(concat!(env!("OUT_DIR"), "/exports.rs"));

/// Whether `name` is on the export list (the `entry!` macro's build check).
pub const fn listed(name: &str) -> bool {
    let mut i = 0;
    while i < EXPORTS.len() {
        if str_eq(EXPORTS[i].0, name) {
            return true;
        }
        i += 1;
    }
    false
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn the_list_names_each_symbol_once_with_a_node() {
        let mut names: Vec<_> = super::EXPORTS.iter().map(|e| e.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), super::EXPORTS.len());
        assert!(super::EXPORTS
            .iter()
            .all(|e| e.1 == "SSLASYNC_0" || e.1 == env!("SSLASYNC_OPENSSL_NODE")));
        assert!(super::listed("SSL_new") && !super::listed("SSL_ne"));
    }
}
