//! Raw OpenSSL declarations: `openssl-sys` for the SSL and ex_data API, and
//! bindgen output over the installed headers for the `ASYNC_*` API it lacks.

#![allow(non_camel_case_types, non_upper_case_globals, dead_code, clippy::all)]

#[cfg(sslasync_ossl111)]
pub use openssl_sys::ERR_put_error;
pub use openssl_sys::{
    CRYPTO_get_ex_new_index, SSL_CTX_get_ex_data, SSL_get_ex_data, SSL_set_ex_data, CRYPTO_EX_DATA,
    SSL, SSL_CTX,
};
#[cfg(not(sslasync_ossl111))]
pub use openssl_sys::{ERR_new, ERR_set_debug, ERR_set_error};

/// The wait-ctx statuses (`ASYNC_STATUS_*`), the same in every OpenSSL that
/// has them; 1.1.1 has none, and the shim keeps its own there.
pub const ASYNC_STATUS_UNSUPPORTED: libc::c_int = 0;
pub const ASYNC_STATUS_ERR: libc::c_int = 1;
pub const ASYNC_STATUS_OK: libc::c_int = 2;
pub const ASYNC_STATUS_EAGAIN: libc::c_int = 3;

/// `CRYPTO_EX_INDEX_SSL` and `_SSL_CTX`: fixed class numbers since 1.1.0.
pub const CRYPTO_EX_INDEX_SSL: libc::c_int = 0;
pub const CRYPTO_EX_INDEX_SSL_CTX: libc::c_int = 1;

/// An opaque async job, only ever handled by pointer.
#[repr(C)]
pub struct ASYNC_JOB {
    _private: [u8; 0],
}

/// The job entry point libssl passes to `ASYNC_start_job`.
pub type ASYNC_job_fn = Option<unsafe extern "C" fn(*mut libc::c_void) -> libc::c_int>;

include!(concat!(env!("OUT_DIR"), "/openssl_async.rs"));
