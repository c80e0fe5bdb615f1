//! The real OpenSSL behind the shim: each interposed function resolved for
//! the version node the shim was built for, and the load-time self-check.
//!
//! The shim acts only when its symbols win for that node, the process's
//! libssl is the one it was built against, and the OpenSSL major matches;
//! `lib.rs` makes it inert (every export a pure forward) otherwise.

use std::ffi::{CStr, CString};
use std::mem;
use std::ptr;
use std::sync::atomic::Ordering;

use libc::{c_int, c_void};

use crate::sys::{self, ASYNC_job_fn, ASYNC_JOB, ASYNC_WAIT_CTX, SSL, SSL_CTX};
use crate::SSL_async_callback_fn;

/// The version node of the OpenSSL the shim was built for (exports.list's
/// "openssl"): the shim looks up, and captures, only that OpenSSL's symbols.
pub const NODE: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("SSLASYNC_OPENSSL_NODE"), "\0").as_bytes()) {
        Ok(node) => node,
        Err(_) => panic!("SSLASYNC_OPENSSL_NODE"),
    };

/// The node of the five API functions: [`NODE`] where OpenSSL has them, the
/// shim's own on 1.1.1 (which has none; the shim provides them).
pub const API_NODE: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("SSLASYNC_API_NODE"), "\0").as_bytes()) {
        Ok(node) => node,
        Err(_) => panic!("SSLASYNC_API_NODE"),
    };

macro_rules! real_fns {
    ($($name:ident: fn($($arg:ty),*) -> $ret:ty;)*) => {
        /// Resolved addresses, 0 until [`resolve_all`] ran.
        #[allow(non_upper_case_globals)]
        mod cell {
            use std::sync::atomic::AtomicUsize;
            $(pub static $name: AtomicUsize = AtomicUsize::new(0);)*
        }
        $(
            /// The real function of this name (one load), once resolved.
            #[allow(non_snake_case)]
            #[inline(always)]
            pub fn $name() -> Option<unsafe extern "C" fn($($arg),*) -> $ret> {
                let p = cell::$name.load(Ordering::Relaxed);
                // SAFETY: 0 or the address dlvsym gave for this name, whose C
                // prototype the type mirrors; Option<fn> has the NULL niche.
                unsafe { mem::transmute::<usize, Option<unsafe extern "C" fn($($arg),*) -> $ret>>(p) }
            }
        )*
        /// Resolves every real function (idempotent).
        pub fn resolve_all() {
            let fallbacks = [
                handle_of(sys::SSL_get_ex_data as *const () as usize),
                handle_of(sys::CRYPTO_get_ex_data as *const () as usize),
            ];
            $(
                let name = concat!(stringify!($name), "\0").as_bytes();
                let name = CStr::from_bytes_with_nul(name).unwrap_or(c"");
                cell::$name.store(lookup(name, &fallbacks) as usize, Ordering::Relaxed);
            )*
        }
    };
}

real_fns! {
    SSL_CTX_set_async_callback: fn(*mut SSL_CTX, SSL_async_callback_fn) -> c_int;
    SSL_CTX_set_async_callback_arg: fn(*mut SSL_CTX, *mut c_void) -> c_int;
    SSL_set_async_callback: fn(*mut SSL, SSL_async_callback_fn) -> c_int;
    SSL_set_async_callback_arg: fn(*mut SSL, *mut c_void) -> c_int;
    SSL_get_async_status: fn(*mut SSL, *mut c_int) -> c_int;
    SSL_new: fn(*mut SSL_CTX) -> *mut SSL;
    SSL_dup: fn(*mut SSL) -> *mut SSL;
    ASYNC_start_job: fn(*mut *mut ASYNC_JOB, *mut ASYNC_WAIT_CTX, *mut c_int, ASYNC_job_fn,
                        *mut c_void, usize) -> c_int;
}

/// `name` at the shim's node after the shim, else in the libssl/libcrypto
/// the shim was linked against (RTLD_NEXT misses them if they load first).
fn lookup(name: &CStr, fallbacks: &[*mut c_void]) -> *mut c_void {
    // SAFETY: dlvsym with NUL-terminated name and version is always safe.
    let p = unsafe { libc::dlvsym(libc::RTLD_NEXT, name.as_ptr(), NODE.as_ptr()) };
    if !p.is_null() {
        return p;
    }
    for &h in fallbacks.iter().filter(|h| !h.is_null()) {
        // SAFETY: h is a handle from dlopen(RTLD_NOLOAD).
        let p = unsafe { libc::dlvsym(h, name.as_ptr(), NODE.as_ptr()) };
        if !p.is_null() {
            return p;
        }
    }
    ptr::null_mut()
}

/// A handle on the already-loaded object containing `addr`.
fn handle_of(addr: usize) -> *mut c_void {
    match object_of(addr) {
        Some((_, name)) => {
            // SAFETY: RTLD_NOLOAD only returns a handle to an object that is
            // already mapped; the name is NUL-terminated.
            unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) }
        }
        None => ptr::null_mut(),
    }
}

/// The load base and file name of the object containing `addr`.
fn object_of(addr: usize) -> Option<(usize, CString)> {
    if addr == 0 {
        return None;
    }
    // SAFETY: Dl_info is plain data; dladdr fills it or returns 0.
    let mut info: libc::Dl_info = unsafe { mem::zeroed() };
    // SAFETY: dladdr accepts any address.
    if unsafe { libc::dladdr(addr as *const c_void, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_owned();
    Some((info.dli_fbase as usize, name))
}

/// Calls `f` on each loaded object (`dl_iterate_phdr`) until it answers.
fn each_object<T>(mut f: impl FnMut(&libc::dl_phdr_info) -> Option<T>) -> Option<T> {
    type Visit<'a> = &'a mut dyn FnMut(&libc::dl_phdr_info) -> bool;
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info and our closure.
        let (info, f) = unsafe { (&*info, &mut *data.cast::<Visit>()) };
        f(info) as c_int
    }
    let mut found = None;
    let mut one = |info: &libc::dl_phdr_info| {
        found = f(info);
        found.is_some()
    };
    let mut one: Visit = &mut one;
    // SAFETY: visit matches the callback type and only uses the closure
    // during the call; the closures never panic.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut one as *mut Visit).cast()) };
    found
}

/// Finds the executable PT_LOAD segment of the object containing `addr`.
fn code_segment(addr: usize) -> Option<(usize, usize)> {
    each_object(|info| {
        (0..info.dlpi_phnum as usize).find_map(|i| {
            // SAFETY: dlpi_phdr has dlpi_phnum entries.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
            let len = ph.p_memsz as usize;
            let code = ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0;
            (code && addr.wrapping_sub(start) < len).then_some((start, len))
        })
    })
}

/// Another libssl than the shim's, loaded when the shim initialises (a
/// program of another OpenSSL major with the shim preloaded), by path.
fn other_libssl(ours: usize) -> Option<String> {
    each_object(|info| {
        if info.dlpi_name.is_null() || info.dlpi_addr as usize == ours {
            return None;
        }
        // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
        let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy();
        let base = name.rsplit('/').next().unwrap_or("");
        base.starts_with("libssl.so.").then(|| name.into_owned())
    })
}

/// Whether the process runs another OpenSSL than the shim's: then a call
/// reaching the shim's API functions may come from code holding that
/// OpenSSL's objects (an unversioned or weak reference binds to any node).
pub fn foreign_openssl() -> bool {
    let linked = object_of(sys::SSL_get_ex_data as *const () as usize).map(|o| o.0);
    let process = SSL_new().and_then(|f| object_of(f as usize)).map(|o| o.0);
    process != linked || other_libssl(linked.unwrap_or(0)).is_some()
}

/// Forgets the real API functions, so that the shim's API exports fail
/// (0, touching nothing) instead of handing another OpenSSL's objects to
/// this one's libssl.
pub fn drop_api() {
    for c in [
        &cell::SSL_CTX_set_async_callback,
        &cell::SSL_CTX_set_async_callback_arg,
        &cell::SSL_set_async_callback,
        &cell::SSL_set_async_callback_arg,
        &cell::SSL_get_async_status,
    ] {
        c.store(0, Ordering::Relaxed);
    }
}

/// The OpenSSL major version the shim was compiled against.
pub fn built_major() -> u64 {
    const MAJOR: &str = env!("SSLASYNC_OPENSSL_MAJOR");
    match MAJOR.as_bytes() {
        [d] => (d - b'0') as u64,
        _ => 0,
    }
}

/// What the self-check found when it passed: libssl's code segment.
pub struct Verdict {
    pub libssl_code: (usize, usize),
}

/// Why the shim cannot act in this process, if it cannot.
pub fn self_check() -> Result<Verdict, String> {
    let me = object_of(self_check as *const () as usize).map(|o| o.0);
    for (name, node) in [
        (c"SSL_set_async_callback", API_NODE),
        (c"SSL_new", NODE),
        (c"SSL_dup", NODE),
        (c"ASYNC_start_job", NODE),
    ] {
        // SAFETY: dlvsym with NUL-terminated strings is always safe to call.
        let first =
            unsafe { libc::dlvsym(libc::RTLD_DEFAULT, name.as_ptr(), node.as_ptr()) } as usize;
        let winner = object_of(first);
        if winner.as_ref().map(|o| o.0) != me {
            let who = winner.map_or("nothing".into(), |o| o.1.to_string_lossy().into_owned());
            return Err(format!(
                "not in front of libssl ({}@{} resolves to {who}); preload it or link \
                 -lsslasync before -lssl",
                name.to_string_lossy(),
                node.to_string_lossy()
            ));
        }
    }
    let (Some(ssl_new), Some(_)) = (SSL_new(), ASYNC_start_job()) else {
        return Err(format!(
            "the real SSL_new or ASYNC_start_job (version {}) cannot be found",
            NODE.to_string_lossy()
        ));
    };
    let process_ssl = object_of(ssl_new as usize);
    let linked_ssl = object_of(sys::SSL_get_ex_data as *const () as usize);
    if process_ssl.as_ref().map(|o| o.0) != linked_ssl.as_ref().map(|o| o.0) {
        let name = |o: Option<(usize, CString)>| {
            o.map_or("?".into(), |o| o.1.to_string_lossy().into_owned())
        };
        return Err(format!(
            "the process uses {} but sslasync was built against {} (OpenSSL {})",
            name(process_ssl),
            name(linked_ssl),
            built_major()
        ));
    }
    if let Some(other) = other_libssl(linked_ssl.as_ref().map_or(0, |o| o.0)) {
        // Its calls carry its own version node and never reach the shim, so
        // the shim could only serve an OpenSSL this program does not use.
        return Err(format!(
            "the process runs {other}, sslasync was built for OpenSSL {} ({}); it stays out \
             of that OpenSSL's way",
            built_major(),
            NODE.to_string_lossy()
        ));
    }
    // SAFETY: OpenSSL_version_num takes no arguments and has no preconditions.
    let running = unsafe { openssl_sys::OpenSSL_version_num() } as u64;
    if running >> 28 != built_major() {
        return Err(format!(
            "the process runs OpenSSL {running:#x}, sslasync was built for OpenSSL {}",
            built_major()
        ));
    }
    if cfg!(not(sslasync_ossl111))
        && (SSL_get_async_status().is_none() || SSL_set_async_callback().is_none())
    {
        return Err("this libssl has no async callback API".into());
    }
    let Some(libssl_code) = code_segment(ssl_new as usize) else {
        return Err("libssl's code segment cannot be located".into());
    };
    Ok(Verdict { libssl_code })
}
