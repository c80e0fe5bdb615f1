//! Everything the shim assumes about OpenSSL's internals, each assumption
//! with how it is verified and what the shim does when it does not hold.
//!
//! | assumption | verified | when it fails |
//! |---|---|---|
//! | a job whose entry point lies in libssl's code and whose argument block is `sizeof(struct ssl_async_args)` was started by libssl's `ssl_start_async_job` | the code range is read from the loaded libssl's program headers at load | a job from elsewhere is forwarded untouched |
//! | the args' first word is the public `SSL*`, and the job out-pointer is `&ssl->job`, a fixed offset from it | at first use, a probe handshake on a known SSL that fails before any crypto measures the offset; every job must then match it, compared without dereferencing | no offset: every job is forwarded untouched (the shim gives native wiring); a mismatch is forwarded untouched and counted |
//! | an `ASYNC_WAIT_CTX` keeps its callback and argument in two of its first five words | at load, two known pairs are set through the API and found | the job-start hook always takes its checked (API) path |
//! | engines read a wait ctx's argument only when its callback is set | OpenSSL's API pairs them; libssl's own argument is the SSL | (design) the "no slot" mark lives only beside a NULL callback |

use std::ptr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use libc::c_void;

use crate::log::{debug, notice};
use crate::sys::{self, ASYNC_job_fn, ASYNC_WAIT_CTX, SSL};

/// `sizeof(struct ssl_async_args)`: five pointer-sized words (SSL*, buffer,
/// length, type tag padded, function pointer) from OpenSSL 1.1.0 to 4.0.
pub const SSL_ASYNC_ARGS_SIZE: usize = 5 * std::mem::size_of::<usize>();

// ------------------------------------------------------------ libssl's code

static TEXT_START: AtomicUsize = AtomicUsize::new(0);
static TEXT_LEN: AtomicUsize = AtomicUsize::new(0);

/// Records libssl's executable segment (found by `real` at load).
pub fn set_libssl_code(start: usize, len: usize) {
    TEXT_START.store(start, Ordering::Relaxed);
    TEXT_LEN.store(len, Ordering::Relaxed);
}

#[inline]
fn in_libssl(func: ASYNC_job_fn) -> bool {
    let f = func.map_or(0, |f| f as usize);
    f.wrapping_sub(TEXT_START.load(Ordering::Relaxed)) < TEXT_LEN.load(Ordering::Relaxed)
}

// ---------------------------------------------------------- job arguments

const UNKNOWN: usize = usize::MAX;
/// `job out-pointer - SSL*` of libssl's jobs, measured by the probe.
static JOB_OFFSET: AtomicUsize = AtomicUsize::new(UNKNOWN);
/// The probe's own SSL while it runs (0 otherwise).
static PROBE_SSL: AtomicUsize = AtomicUsize::new(0);
/// Jobs that looked like libssl's but failed the offset check.
static UNVERIFIED: AtomicUsize = AtomicUsize::new(0);

const NOT_PROBED: u8 = 0;
const PROBING: u8 = 1;
const PROBED: u8 = 2;
static PROBE: AtomicU8 = AtomicU8::new(NOT_PROBED);

/// Jobs forwarded untouched because their arguments did not check out.
pub fn unverified_jobs() -> u64 {
    UNVERIFIED.load(Ordering::Relaxed) as u64
}

/// The SSL a job belongs to, if the job is provably libssl's: entry point
/// in libssl, the args' size, and the out-pointer at the measured offset
/// from the args' first word. Reads the args block (which `size` covers)
/// and nothing the first word points at.
///
/// # Safety
/// The arguments are `ASYNC_start_job`'s, from its caller.
#[inline]
pub unsafe fn job_ssl(
    job: *mut *mut sys::ASYNC_JOB,
    func: ASYNC_job_fn,
    args: *mut c_void,
    size: usize,
) -> Option<*mut SSL> {
    if size != SSL_ASYNC_ARGS_SIZE || args.is_null() || job.is_null() || !in_libssl(func) {
        return None; // not libssl's: nothing to check, nothing to count
    }
    // SAFETY: args points at `size` bytes, and size covers the first word.
    let first = unsafe { args.cast::<usize>().read_unaligned() };
    let offset = (job as usize).wrapping_sub(first);
    let known = JOB_OFFSET.load(Ordering::Relaxed);
    if offset == known && first != 0 {
        return Some(first as *mut SSL);
    }
    if first != 0 && first == PROBE_SSL.load(Ordering::Relaxed) {
        record_probe(offset);
    } else if known != UNKNOWN {
        unverified(offset);
    }
    // Not yet measured: no SSL of this process needed wiring so far (the
    // hook looks only because statistics are counting).
    None
}

#[cold]
#[inline(never)]
fn unverified(offset: usize) {
    if UNVERIFIED.fetch_add(1, Ordering::Relaxed) == 0 {
        debug!(
            "a libssl job's arguments do not match the measured layout (offset {offset:#x}): \
             jobs like it are forwarded untouched"
        );
    }
}

#[cold]
fn record_probe(offset: usize) {
    // &ssl->job lies inside the SSL object, pointer-aligned.
    if offset < 0x1_0000 && offset % std::mem::align_of::<usize>() == 0 {
        JOB_OFFSET.store(offset, Ordering::Relaxed);
    }
}

/// Measures the job layout once (the first time an SSL may need wiring).
/// `open_gate` makes the job-start hook look at the probe's job.
pub fn ensure_job_layout(open_gate: impl Fn(bool)) {
    let mut spins = 0;
    loop {
        match PROBE.compare_exchange(NOT_PROBED, PROBING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(PROBED) => return,
            Err(_) => crate::sync::relax(&mut spins),
        }
    }
    open_gate(true);
    // A thread of its own: the caller may itself be inside an async job
    // (a callback run inline), where libssl would start no new one.
    let ran = std::thread::Builder::new()
        .name("sslasync-probe".into())
        .spawn(|| {
            // SAFETY: plain OpenSSL calls on objects created here.
            unsafe { probe_handshake() }
        })
        .map(|t| t.join().is_ok())
        .unwrap_or(false);
    open_gate(false);
    let offset = JOB_OFFSET.load(Ordering::Relaxed);
    if offset == UNKNOWN {
        notice!(
            "libssl's async job layout could not be verified{}: callbacks keep OpenSSL's own \
             wiring",
            if ran { "" } else { " (no probe thread)" }
        );
    } else {
        debug!("libssl jobs: &ssl->job = ssl + {offset:#x}");
    }
    PROBE.store(PROBED, Ordering::Release);
}

/// A client handshake in async mode on an SSL whose every protocol version
/// is disabled: libssl starts the job (with the known SSL in its args), and
/// the job fails at version negotiation, before any key or random is made.
unsafe fn probe_handshake() {
    use openssl_sys as o;
    // SAFETY: each object is checked, used on this thread and freed here.
    unsafe {
        let ctx = o::SSL_CTX_new(o::TLS_client_method());
        if ctx.is_null() {
            o::ERR_clear_error();
            return;
        }
        o::SSL_CTX_set_options(ctx, o::SSL_OP_NO_SSL_MASK as _);
        o::SSL_CTX_ctrl(
            ctx,
            sys::SSL_CTRL_MODE,
            sys::SSL_MODE_ASYNC as _,
            ptr::null_mut(),
        );
        let s = o::SSL_new(ctx);
        if !s.is_null() {
            o::SSL_set_bio(s, o::BIO_new(o::BIO_s_mem()), o::BIO_new(o::BIO_s_mem()));
            o::SSL_set_connect_state(s);
            PROBE_SSL.store(s as usize, Ordering::Relaxed);
            o::SSL_do_handshake(s);
            PROBE_SSL.store(0, Ordering::Relaxed);
            o::SSL_free(s);
        }
        o::SSL_CTX_free(ctx);
        o::ERR_clear_error();
    }
}

/// fork() in the child: a probe that was running in the parent is gone
/// (true then: the caller drops the gate reason the probe held).
pub fn after_fork_child() -> bool {
    PROBE
        .compare_exchange(PROBING, NOT_PROBED, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

// ------------------------------------------------------- wait-ctx words

/// Word offsets of the callback and its argument inside `ASYNC_WAIT_CTX`.
/// 0 until verified: word 0 is the fds list pointer, which never equals the
/// trampoline or a mark, so the hook's fast checks simply fail.
static WCTX_CB: AtomicUsize = AtomicUsize::new(0);
static WCTX_ARG: AtomicUsize = AtomicUsize::new(0);

/// Finds where a wait ctx keeps its callback and arg by setting two known
/// pairs through the API and looking for them among the words every
/// OpenSSL 3.0 to 4.0 wait ctx has (fds, numadd, numdel, callback,
/// callback_arg, then status). Anything unexpected leaves them unknown.
pub fn probe_wait_ctx_layout() {
    #[cfg(not(sslasync_ossl111))]
    probe_wait_ctx_words();
}

#[cfg(not(sslasync_ossl111))]
fn probe_wait_ctx_words() {
    use libc::c_int;
    unsafe extern "C" fn s1(_: *mut c_void) -> c_int {
        1
    }
    unsafe extern "C" fn s2(_: *mut c_void) -> c_int {
        2
    }
    const WORDS: usize = 5;
    // SAFETY: a fresh wait ctx, freed below; only its first WORDS words,
    // which every supported OpenSSL allocates, are read.
    unsafe {
        let w = sys::ASYNC_WAIT_CTX_new();
        if w.is_null() {
            return;
        }
        let words = w as *const usize;
        let find = |v: usize| (0..WORDS).find(|&i| ptr::read_volatile(words.add(i)) == v);
        let found = (|| {
            sys::ASYNC_WAIT_CTX_set_callback(w, Some(s1), 0x5151_0001 as *mut c_void);
            let (cb, arg) = (find(s1 as *const () as usize)?, find(0x5151_0001)?);
            sys::ASYNC_WAIT_CTX_set_callback(w, Some(s2), 0x5252_0002 as *mut c_void);
            let ok = ptr::read_volatile(words.add(cb)) == s2 as *const () as usize
                && ptr::read_volatile(words.add(arg)) == 0x5252_0002;
            ok.then_some((cb, arg))
        })();
        sys::ASYNC_WAIT_CTX_free(w);
        if let Some((cb, arg)) = found {
            WCTX_ARG.store(arg, Ordering::Release);
            WCTX_CB.store(cb, Ordering::Release);
        }
    }
}

/// Whether `wctx` carries `callback` or, beside a NULL callback, the current
/// "no slot" mark. Reads the two words directly (no call, no stack frame).
#[inline(always)]
pub fn wait_ctx_is(wctx: *mut ASYNC_WAIT_CTX, callback: usize) -> bool {
    if wctx.is_null() {
        return false;
    }
    let words = wctx as *const usize;
    // SAFETY: wctx is the live wait ctx passed to ASYNC_start_job and the
    // offsets are 0 or were verified at load to lie inside every wait ctx.
    let word = |offset: &AtomicUsize| unsafe { *words.add(offset.load(Ordering::Relaxed)) };
    word(&WCTX_CB) == callback || word(&WCTX_ARG) == slotless_mark()
}

// ----------------------------------------------------- the "no slot" mark

/// Bumped whenever a setter gives an SSL that may already have a wait ctx
/// its first slot, which invalidates every mark at once.
static SLOTLESS_EPOCH: AtomicUsize = AtomicUsize::new(0);

/// The "this SSL has no slot" mark of the current epoch, put in the argument
/// of a wait ctx whose callback stays NULL, so later job starts of an SSL
/// that does not use the API skip the ex_data lookup. Top and bottom bits
/// set: never a pointer.
#[inline(always)]
pub fn slotless_mark() -> usize {
    (1 << 63) | (SLOTLESS_EPOCH.load(Ordering::Relaxed) << 1) | 1
}

/// A setter attached a slot to an SSL that may have run jobs already.
pub fn invalidate_slotless_marks() {
    SLOTLESS_EPOCH.fetch_add(1, Ordering::Relaxed);
}
