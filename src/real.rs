//! The real OpenSSL behind the shim: each interposed function resolved for
//! the version node the shim was built for, and the load-time self-check.
//!
//! The shim acts only when its symbols win for that node in the program's
//! global scope, libssl's own calls into libcrypto's `ASYNC_start_job` are
//! bound to it, the process's libssl is the one it was built against, and
//! the OpenSSL major matches; `lib.rs` makes it inert (every export a pure
//! forward) otherwise. Nothing here allocates: the reasons name objects by
//! the loader's own strings.

use std::ffi::CStr;
use std::fmt;
use std::mem;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_char, c_int, c_void};

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
    SSL_free: fn(*mut SSL) -> ();
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

/// A loaded object: its load base and the loader's name for it.
#[derive(Clone, Copy)]
pub struct Object {
    base: usize,
    name: *const c_char,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.name.is_null() {
            return f.write_str("?");
        }
        // SAFETY: a NUL-terminated name owned by the loader, valid while the
        // object stays loaded (objects OpenSSL lives in are never unloaded).
        let name = unsafe { CStr::from_ptr(self.name) };
        match name.to_str() {
            Ok("") => f.write_str("the program"),
            Ok(s) => f.write_str(s),
            Err(_) => f.write_str("?"),
        }
    }
}

/// A handle on the already-loaded object containing `addr`.
fn handle_of(addr: usize) -> *mut c_void {
    match object_of(addr) {
        Some(o) if !o.name.is_null() => {
            // SAFETY: RTLD_NOLOAD only returns a handle to an object that is
            // already mapped; the name is NUL-terminated.
            unsafe { libc::dlopen(o.name, libc::RTLD_NOW | libc::RTLD_NOLOAD) }
        }
        _ => ptr::null_mut(),
    }
}

/// The object containing `addr`.
fn object_of(addr: usize) -> Option<Object> {
    if addr == 0 {
        return None;
    }
    // SAFETY: Dl_info is plain data; dladdr fills it or returns 0.
    let mut info: libc::Dl_info = unsafe { mem::zeroed() };
    // SAFETY: dladdr accepts any address.
    if unsafe { libc::dladdr(addr as *const c_void, &mut info) } == 0 {
        return None;
    }
    Some(Object {
        base: info.dli_fbase as usize,
        name: info.dli_fname,
    })
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

/// The program headers of the object loaded at `base`.
fn headers_of(info: &libc::dl_phdr_info) -> &[libc::Elf64_Phdr] {
    if info.dlpi_phdr.is_null() {
        return &[];
    }
    // SAFETY: dlpi_phdr has dlpi_phnum entries, mapped while it is loaded.
    unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
}

/// Finds the executable PT_LOAD segment of the object containing `addr`.
fn code_segment(addr: usize) -> Option<(usize, usize)> {
    each_object(|info| {
        headers_of(info).iter().find_map(|ph| {
            let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
            let len = ph.p_memsz as usize;
            let code = ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0;
            (code && addr.wrapping_sub(start) < len).then_some((start, len))
        })
    })
}

/// Another libssl than the shim's, loaded when the shim initialises (a
/// program of another OpenSSL major with the shim preloaded).
fn other_libssl(ours: usize) -> Option<Object> {
    each_object(|info| {
        if info.dlpi_name.is_null() || info.dlpi_addr as usize == ours {
            return None;
        }
        // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
        let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
        let base = name.rsplit(|&b| b == b'/').next().unwrap_or(b"");
        base.starts_with(b"libssl.so.").then_some(Object {
            base: info.dlpi_addr as usize,
            name: info.dlpi_name,
        })
    })
}

/// Whether the process runs another OpenSSL than the shim's: then a call
/// reaching the shim's API functions may come from code holding that
/// OpenSSL's objects (an unversioned or weak reference binds to any node).
pub fn foreign_openssl() -> bool {
    let linked = object_of(sys::SSL_get_ex_data as *const () as usize).map(|o| o.base);
    let process = SSL_new()
        .and_then(|f| object_of(f as usize))
        .map(|o| o.base);
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

/// `SSL_is_quic` where libssl has it (3.2 on): 0 unresolved, 1 absent.
static IS_QUIC: AtomicUsize = AtomicUsize::new(0);

/// Whether `s` is a QUIC object (not a TLS connection) in a libssl that
/// has QUIC at all.
pub fn is_quic(s: *mut SSL) -> bool {
    let mut f = IS_QUIC.load(Ordering::Acquire);
    if f == 0 {
        let h = SSL_new().map_or(ptr::null_mut(), |n| handle_of(n as usize));
        // SAFETY: dlsym on a handle from dlopen(RTLD_NOLOAD), or NULL.
        let p = if h.is_null() {
            ptr::null_mut()
        } else {
            unsafe { libc::dlsym(h, c"SSL_is_quic".as_ptr()) }
        };
        f = if p.is_null() { 1 } else { p as usize };
        IS_QUIC.store(f, Ordering::Release);
    }
    if f == 1 {
        return false;
    }
    // SAFETY: libssl's `int SSL_is_quic(const SSL *)`, on a live SSL.
    let is_quic = unsafe { mem::transmute::<usize, unsafe extern "C" fn(*mut SSL) -> c_int>(f) };
    // SAFETY: as above.
    unsafe { is_quic(s) == 1 }
}

/// What the self-check found when it passed: libssl's code segment.
pub struct Verdict {
    pub libssl_code: (usize, usize),
}

/// Why the shim cannot act in this process.
pub enum Why {
    Disabled,
    /// The program's global scope resolves `name@node` elsewhere.
    NotInFront {
        name: &'static CStr,
        node: &'static CStr,
        winner: Option<Object>,
    },
    /// libssl's own calls into libcrypto do not reach the shim.
    LibsslBoundPast {
        winner: Option<Object>,
    },
    MissingReal,
    OtherLibssl {
        process: Option<Object>,
        linked: Option<Object>,
    },
    SecondLibssl(Object),
    OtherMajor(u64),
    NoApi,
    NoCodeSegment,
    NoIndex,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Why::Disabled => f.write_str("SSLASYNC_DISABLE=1 is set"),
            Why::NotInFront { name, node, winner } => {
                write!(
                    f,
                    "not in front of libssl in the program's global scope ({}@{} resolves to ",
                    name.to_string_lossy(),
                    node.to_string_lossy()
                )?;
                write_obj(f, winner, "nothing")?;
                f.write_str("); preload it or link -lsslasync before -lssl")
            }
            Why::LibsslBoundPast { winner } => {
                f.write_str("libssl's calls to ASYNC_start_job are bound to ")?;
                write_obj(f, winner, "nothing")?;
                f.write_str(
                    " (sslasync was loaded after libssl, e.g. by dlopen); preload it or link \
                     -lsslasync before -lssl",
                )
            }
            Why::MissingReal => write!(
                f,
                "a real function of OpenSSL's (version {}) cannot be looked up",
                NODE.to_string_lossy()
            ),
            Why::OtherLibssl { process, linked } => {
                write!(f, "the process uses ")?;
                write_obj(f, process, "?")?;
                write!(f, " but sslasync was built against ")?;
                write_obj(f, linked, "?")?;
                write!(f, " (OpenSSL {})", built_major())
            }
            Why::SecondLibssl(other) => write!(
                f,
                "the process runs {other}, sslasync was built for OpenSSL {} ({}); it stays out \
                 of that OpenSSL's way",
                built_major(),
                NODE.to_string_lossy()
            ),
            Why::OtherMajor(running) => write!(
                f,
                "the process runs OpenSSL {running:#x}, sslasync was built for OpenSSL {}",
                built_major()
            ),
            Why::NoApi => f.write_str("this libssl has no async callback API"),
            Why::NoCodeSegment => f.write_str("libssl's code segment cannot be located"),
            Why::NoIndex => f.write_str("OpenSSL refused an ex_data index"),
        }
    }
}

fn write_obj(f: &mut fmt::Formatter, o: &Option<Object>, none: &str) -> fmt::Result {
    match o {
        Some(o) => write!(f, "{o}"),
        None => f.write_str(none),
    }
}

/// A handle whose lookups search the program's global scope (the program,
/// its preloads and dependencies, and objects dlopened with RTLD_GLOBAL),
/// which is where libssl's and the program's references are resolved first.
fn global_scope() -> *mut c_void {
    // SAFETY: dlopen(NULL) returns the main program's handle.
    unsafe { libc::dlopen(ptr::null(), libc::RTLD_LAZY) }
}

/// Whether the shim itself is in the program's global scope (its own
/// `sslasync_version` is found there).
pub fn in_global_scope() -> bool {
    let global = global_scope();
    // SAFETY: dlvsym with NUL-terminated strings on a dlopen handle.
    !global.is_null()
        && !unsafe { libc::dlvsym(global, c"sslasync_version".as_ptr(), c"SSLASYNC_0".as_ptr()) }
            .is_null()
}

/// Why the shim cannot act in this process, if it cannot; `ours` is the
/// address of the shim's own `ASYNC_start_job`.
pub fn self_check(ours: usize) -> Result<Verdict, Why> {
    let me = object_of(self_check as *const () as usize).map(|o| o.base);
    let global = global_scope();
    for (name, node) in [
        (c"SSL_set_async_callback", API_NODE),
        (c"SSL_new", NODE),
        (c"SSL_dup", NODE),
        (c"SSL_free", NODE),
        (c"ASYNC_start_job", NODE),
    ] {
        // SAFETY: dlvsym with NUL-terminated strings; a NULL handle (dlopen
        // failed) finds nothing and fails the check.
        let first = if global.is_null() {
            ptr::null_mut()
        } else {
            unsafe { libc::dlvsym(global, name.as_ptr(), node.as_ptr()) }
        };
        let winner = object_of(first as usize);
        if winner.map(|o| o.base) != me {
            return Err(Why::NotInFront { name, node, winner });
        }
    }
    let (Some(ssl_new), Some(_), Some(_), Some(_)) =
        (SSL_new(), SSL_dup(), SSL_free(), ASYNC_start_job())
    else {
        return Err(Why::MissingReal);
    };
    if cfg!(not(sslasync_ossl111))
        && (SSL_CTX_set_async_callback().is_none()
            || SSL_CTX_set_async_callback_arg().is_none()
            || SSL_set_async_callback_arg().is_none())
        && SSL_get_async_status().is_some()
    {
        // This libssl has the API, but not every function could be looked up.
        return Err(Why::MissingReal);
    }
    let process_ssl = object_of(ssl_new as usize);
    let linked_ssl = object_of(sys::SSL_get_ex_data as *const () as usize);
    if process_ssl.map(|o| o.base) != linked_ssl.map(|o| o.base) {
        return Err(Why::OtherLibssl {
            process: process_ssl,
            linked: linked_ssl,
        });
    }
    if let Some(other) = other_libssl(linked_ssl.map_or(0, |o| o.base)) {
        // Its calls carry its own version node and never reach the shim, so
        // the shim could only serve an OpenSSL this program does not use.
        return Err(Why::SecondLibssl(other));
    }
    // SAFETY: OpenSSL_version_num takes no arguments and has no preconditions.
    let running = unsafe { openssl_sys::OpenSSL_version_num() } as u64;
    if running >> 28 != built_major() {
        return Err(Why::OtherMajor(running));
    }
    if cfg!(not(sslasync_ossl111))
        && (SSL_get_async_status().is_none() || SSL_set_async_callback().is_none())
    {
        return Err(Why::NoApi);
    }
    let Some(libssl_code) = code_segment(ssl_new as usize) else {
        return Err(Why::NoCodeSegment);
    };
    // The hook runs only if libssl's own calls reach it. A libssl loaded
    // before the shim (the shim dlopened later, RTLD_LOCAL or GLOBAL) was
    // bound past it; one bound lazily and not yet called resolves through
    // the global scope, which the check above covered.
    let libssl_base = process_ssl.map_or(0, |o| o.base);
    if let Some(bound) = got_binding(libssl_base, c"ASYNC_start_job") {
        let unbound = bound.wrapping_sub(libssl_code.0) < libssl_code.1;
        if bound != ours && !unbound {
            return Err(Why::LibsslBoundPast {
                winner: object_of(bound),
            });
        }
    }
    Ok(Verdict { libssl_code })
}

// ------------------------------------------------ ELF: a GOT entry's value

#[repr(C)]
struct Dyn {
    tag: i64,
    val: u64,
}

#[repr(C)]
struct Rela {
    offset: u64,
    info: u64,
    addend: i64,
}

#[repr(C)]
struct Sym {
    name: u32,
    info: u8,
    other: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_JMPREL: i64 = 23;

/// The relocation types that fill a GOT entry with a function's address.
#[cfg(target_arch = "x86_64")]
const GOT_RELOCS: [u32; 2] = [7, 6]; // R_X86_64_JUMP_SLOT, R_X86_64_GLOB_DAT
#[cfg(target_arch = "aarch64")]
const GOT_RELOCS: [u32; 2] = [1026, 1025]; // R_AARCH64_JUMP_SLOT, R_AARCH64_GLOB_DAT
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const GOT_RELOCS: [u32; 0] = [];

/// The value of the GOT entry through which the object loaded at `base`
/// calls `name` (bound by the loader, or still the lazy-binding stub), if
/// it has one.
fn got_binding(base: usize, name: &CStr) -> Option<usize> {
    each_object(|info| {
        if info.dlpi_addr as usize != base {
            return None;
        }
        let dynamic = headers_of(info)
            .iter()
            .find(|ph| ph.p_type == libc::PT_DYNAMIC)?;
        let load = info.dlpi_addr as usize;
        // The loader relocates these in place on most targets; where it
        // does not they are still object-relative.
        let addr = |v: u64| {
            let v = v as usize;
            if v < load {
                v + load
            } else {
                v
            }
        };
        let (mut strtab, mut symtab) = (0, 0);
        let mut tables = [(0usize, 0usize); 2];
        let mut d = (load + dynamic.p_vaddr as usize) as *const Dyn;
        // SAFETY: PT_DYNAMIC of a loaded object is mapped and ends with
        // DT_NULL.
        unsafe {
            while (*d).tag != DT_NULL {
                match (*d).tag {
                    DT_STRTAB => strtab = addr((*d).val),
                    DT_SYMTAB => symtab = addr((*d).val),
                    DT_JMPREL => tables[0].0 = addr((*d).val),
                    DT_PLTRELSZ => tables[0].1 = (*d).val as usize,
                    DT_RELA => tables[1].0 = addr((*d).val),
                    DT_RELASZ => tables[1].1 = (*d).val as usize,
                    _ => {}
                }
                d = d.add(1);
            }
        }
        if strtab == 0 || symtab == 0 {
            return None;
        }
        for (table, size) in tables {
            if table == 0 {
                continue;
            }
            for i in 0..size / mem::size_of::<Rela>() {
                // SAFETY: the relocation table, symbol table and string
                // table of a loaded object are mapped; indices come from it.
                unsafe {
                    let r = &*(table as *const Rela).add(i);
                    if !GOT_RELOCS.contains(&((r.info & 0xffff_ffff) as u32)) {
                        continue;
                    }
                    let sym = &*(symtab as *const Sym).add((r.info >> 32) as usize);
                    let sym_name = CStr::from_ptr((strtab + sym.name as usize) as *const c_char);
                    if sym_name == name {
                        return Some(ptr::read_volatile(
                            (load + r.offset as usize) as *const usize,
                        ));
                    }
                }
            }
        }
        None
    })
}
