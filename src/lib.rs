//! sslasync: OpenSSL's asynchronous-completion callback API
//! (`SSL_CTX_set_async_callback` and friends) as a drop-in shim library.
//!
//! The library exports the exact OpenSSL symbols, so a C program gets it by
//! `LD_PRELOAD` or by linking `-lsslasync` ahead of `-lssl`. Its state lives
//! on the real `SSL`/`SSL_CTX` objects through ex_data ([`state`]), and the
//! bridge ([`bridge`]) re-wires each SSL's `ASYNC_WAIT_CTX` on every job start
//! and resume by interposing libcrypto's `ASYNC_start_job`. That one hook is
//! what lets the shim fix native OpenSSL's sharp edges: late registration,
//! clearing a wired callback, NULL arguments and completions that arrive
//! after `SSL_free`. Everything else behaves exactly as native OpenSSL 3.x.
//!
//! Module map: [`entry`] the exported functions, [`bridge`] the wait-ctx
//! trampoline and job-start hook, [`state`] ex_data and per-object state,
//! [`slots`] the never-freed per-SSL records, [`real`] the real OpenSSL and
//! the load-time self-check, [`stats`] optional counters, [`sys`] raw FFI.

#![deny(unsafe_op_in_unsafe_fn)]
#[cfg(not(target_pointer_width = "64"))]
compile_error!("sslasync packs slot handles into 64-bit pointers");

mod bridge;
mod entry;
mod error;
mod log;
mod real;
mod slots;
mod state;
mod stats;
mod sys;

#[cfg(test)]
mod header_check;

#[allow(non_camel_case_types)]
/// The callback type of the API, exactly as `<openssl/ssl.h>` spells it:
/// `typedef int (*SSL_async_callback_fn)(SSL *s, void *arg);`
pub type SSL_async_callback_fn =
    Option<unsafe extern "C" fn(s: *mut sys::SSL, arg: *mut libc::c_void) -> libc::c_int>;
