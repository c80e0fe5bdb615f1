//! The real OpenSSL behind the shim: the functions it interposes or wraps,
//! libssl's code range, and the load-time self-check that makes it inert.
//!
//! The shim only acts when it is really in front of libssl (its symbols win)
//! and the process runs the OpenSSL major it was built for; otherwise every
//! export forwards to the real function and one line on stderr says why.

use std::ffi::{CStr, CString};
use std::mem;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use libc::{c_int, c_void};

use crate::log::debug;
use crate::sys::{self, ASYNC_job_fn, ASYNC_JOB, ASYNC_WAIT_CTX, SSL, SSL_CTX};
use crate::SSL_async_callback_fn;

pub type StartJobFn = unsafe extern "C" fn(
    *mut *mut ASYNC_JOB,
    *mut ASYNC_WAIT_CTX,
    *mut c_int,
    ASYNC_job_fn,
    *mut c_void,
    usize,
) -> c_int;
pub type SslNewFn = unsafe extern "C" fn(*mut SSL_CTX) -> *mut SSL;
pub type SslDupFn = unsafe extern "C" fn(*mut SSL) -> *mut SSL;
pub type CtxSetCbFn = unsafe extern "C" fn(*mut SSL_CTX, SSL_async_callback_fn) -> c_int;
pub type CtxSetArgFn = unsafe extern "C" fn(*mut SSL_CTX, *mut c_void) -> c_int;
pub type SslSetCbFn = unsafe extern "C" fn(*mut SSL, SSL_async_callback_fn) -> c_int;
pub type SslSetArgFn = unsafe extern "C" fn(*mut SSL, *mut c_void) -> c_int;
pub type GetStatusFn = unsafe extern "C" fn(*mut SSL, *mut c_int) -> c_int;

/// The next definition of each symbol after the shim (the real OpenSSL).
pub struct Real {
    pub ssl_new: Option<SslNewFn>,
    pub ssl_dup: Option<SslDupFn>,
    pub start_job: Option<StartJobFn>,
    pub ctx_set_callback: Option<CtxSetCbFn>,
    pub ctx_set_arg: Option<CtxSetArgFn>,
    pub set_callback: Option<SslSetCbFn>,
    pub set_arg: Option<SslSetArgFn>,
    pub get_status: Option<GetStatusFn>,
}

static REAL: OnceLock<Real> = OnceLock::new();
/// `Real::start_job` and `Real::get_status` again, as plain words for the
/// hot paths (one load instead of the `OnceLock` check and an `Option`).
static START_JOB: AtomicUsize = AtomicUsize::new(0);
static GET_STATUS: AtomicUsize = AtomicUsize::new(0);
/// libssl's executable segment: a job whose entry point lies outside it was
/// not started by libssl, so its args are not `struct ssl_async_args`.
static TEXT_START: AtomicUsize = AtomicUsize::new(0);
static TEXT_LEN: AtomicUsize = AtomicUsize::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether the self-check passed and the shim's own behaviour is on.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// Looks `name` up after the shim, falling back to the libssl/libcrypto the
/// shim was linked against (RTLD_NEXT misses them if they load before us).
fn lookup(name: &CStr, fallback: *mut c_void) -> *mut c_void {
    // SAFETY: dlsym with a NUL-terminated name is always safe to call.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if !p.is_null() || fallback.is_null() {
        return p;
    }
    // SAFETY: fallback is a handle from dlopen(RTLD_NOLOAD).
    unsafe { libc::dlsym(fallback, name.as_ptr()) }
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

macro_rules! resolve {
    ($name:literal, $ty:ty, $fallback:expr) => {{
        let p = lookup($name, $fallback);
        // SAFETY: a non-NULL dlsym result for this OpenSSL name is that
        // function, whose C prototype $ty mirrors.
        (!p.is_null()).then(|| unsafe { mem::transmute::<*mut c_void, $ty>(p) })
    }};
}

fn resolve_all() -> Real {
    let libssl = handle_of(sys::SSL_get_ex_data as *const () as usize);
    let libcrypto = handle_of(sys::CRYPTO_get_ex_data as *const () as usize);
    let real = Real {
        ssl_new: resolve!(c"SSL_new", SslNewFn, libssl),
        ssl_dup: resolve!(c"SSL_dup", SslDupFn, libssl),
        start_job: resolve!(c"ASYNC_start_job", StartJobFn, libcrypto),
        ctx_set_callback: resolve!(c"SSL_CTX_set_async_callback", CtxSetCbFn, libssl),
        ctx_set_arg: resolve!(c"SSL_CTX_set_async_callback_arg", CtxSetArgFn, libssl),
        set_callback: resolve!(c"SSL_set_async_callback", SslSetCbFn, libssl),
        set_arg: resolve!(c"SSL_set_async_callback_arg", SslSetArgFn, libssl),
        get_status: resolve!(c"SSL_get_async_status", GetStatusFn, libssl),
    };
    START_JOB.store(real.start_job.map_or(0, |f| f as usize), Ordering::Release);
    GET_STATUS.store(real.get_status.map_or(0, |f| f as usize), Ordering::Release);
    real
}

/// The real functions (resolved on first use, even before the constructor).
pub fn real() -> &'static Real {
    REAL.get_or_init(resolve_all)
}

/// The real `ASYNC_start_job`, resolving it first if nothing has yet.
#[inline]
pub fn start_job() -> Option<StartJobFn> {
    start_job_resolved().or_else(|| real().start_job)
}

/// The real `ASYNC_start_job` once resolved: a single load for the hot path.
#[inline(always)]
pub fn start_job_resolved() -> Option<StartJobFn> {
    let p = START_JOB.load(Ordering::Relaxed);
    // SAFETY: START_JOB is 0 or a resolved ASYNC_start_job address, and
    // Option<fn> has the null-pointer niche, so 0 maps to None.
    unsafe { mem::transmute::<usize, Option<StartJobFn>>(p) }
}

/// The real `SSL_get_async_status` once resolved.
#[inline(always)]
pub fn get_status_resolved() -> Option<GetStatusFn> {
    // SAFETY: 0 or a resolved SSL_get_async_status; null-pointer niche.
    unsafe { mem::transmute::<usize, Option<GetStatusFn>>(GET_STATUS.load(Ordering::Relaxed)) }
}

/// Whether `func` is code inside libssl.
#[inline]
pub fn in_libssl(func: ASYNC_job_fn) -> bool {
    let f = func.map_or(0, |f| f as usize);
    f.wrapping_sub(TEXT_START.load(Ordering::Relaxed)) < TEXT_LEN.load(Ordering::Relaxed)
}

/// Finds the executable PT_LOAD segment of the object containing `addr`.
fn text_segment(addr: usize) -> Option<(usize, usize)> {
    struct Search {
        addr: usize,
        found: Option<(usize, usize)>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info and our Search pointer.
        let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: dlpi_phdr has dlpi_phnum entries.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            if ph.p_type != libc::PT_LOAD || ph.p_flags & libc::PF_X == 0 {
                continue;
            }
            let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
            let len = ph.p_memsz as usize;
            if search.addr.wrapping_sub(start) < len {
                search.found = Some((start, len));
                return 1;
            }
        }
        0
    }
    let mut search = Search { addr, found: None };
    // SAFETY: visit matches the callback type and only uses `search` during
    // the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast()) };
    search.found
}

/// The address of the first definition of `name` in the global scope.
fn global(name: &CStr) -> usize {
    // SAFETY: dlsym with a NUL-terminated name is always safe to call.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
}

/// Why the shim cannot act in this process, if it cannot.
fn self_check(real: &Real) -> Result<(), String> {
    let me = object_of(self_check as *const () as usize).map(|o| o.0);
    for name in [
        c"SSL_set_async_callback",
        c"SSL_new",
        c"SSL_dup",
        c"ASYNC_start_job",
    ] {
        let winner = object_of(global(name));
        if winner.as_ref().map(|o| o.0) != me {
            let who = winner.map_or("nothing".into(), |o| o.1.to_string_lossy().into_owned());
            return Err(format!(
                "not in front of libssl ({} resolves to {who}); preload it or link -lsslasync before -lssl",
                name.to_string_lossy()
            ));
        }
    }
    let (Some(ssl_new), Some(_)) = (real.ssl_new, real.start_job) else {
        return Err("the real SSL_new or ASYNC_start_job cannot be found".into());
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
    // SAFETY: OpenSSL_version_num takes no arguments and has no preconditions.
    let running = unsafe { openssl_sys::OpenSSL_version_num() } as u64;
    if running >> 28 != built_major() {
        return Err(format!(
            "the process runs OpenSSL {running:#x}, sslasync was built for OpenSSL {}",
            built_major()
        ));
    }
    if real.get_status.is_none() || real.set_callback.is_none() {
        return Err("this libssl has no async callback API".into());
    }
    let Some((start, len)) = text_segment(ssl_new as usize) else {
        return Err("libssl's code segment cannot be located".into());
    };
    TEXT_START.store(start, Ordering::Relaxed);
    TEXT_LEN.store(len, Ordering::Relaxed);
    Ok(())
}

/// The OpenSSL major version the shim was compiled against.
pub fn built_major() -> u64 {
    sys::OPENSSL_VERSION_MAJOR as u64
}

/// Load-time setup: resolve, self-check, register ex_data; decide active/inert.
pub fn init() {
    crate::log::init_from_env();
    crate::stats::init_from_env();
    let real = real();
    let verdict = self_check(real).and_then(|()| {
        if crate::state::register_indices() {
            Ok(())
        } else {
            Err("OpenSSL refused an ex_data index".into())
        }
    });
    match verdict {
        Ok(()) => {
            crate::bridge::probe_wait_ctx_layout();
            ACTIVE.store(true, Ordering::Release);
            debug!(
                "active: libssl code {:#x}+{:#x}, built for OpenSSL {}",
                TEXT_START.load(Ordering::Relaxed),
                TEXT_LEN.load(Ordering::Relaxed),
                built_major()
            );
        }
        Err(why) => eprintln!("sslasync: inactive, OpenSSL's own behaviour applies: {why}"),
    }
}

/// Runs `init` when the library is loaded, before `main` (not in cargo's
/// unit-test binary, which is no shim).
#[used]
#[cfg_attr(not(test), link_section = ".init_array")]
static INIT: extern "C" fn() = {
    extern "C" fn on_load() {
        let _ = std::panic::catch_unwind(init);
    }
    on_load
};
