//! Errors an entry point reports: 0 to the caller plus one entry on the
//! OpenSSL error queue, the way libssl itself reports bad input.

use std::ffi::CStr;

use crate::sys;

/// Why an entry point failed; each maps to an OpenSSL reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A required pointer argument was NULL.
    NullParameter,
    /// An argument outside the values the function accepts.
    InvalidArgument,
    /// The per-object state could not be allocated.
    OutOfMemory,
    /// The real OpenSSL function is missing or the shim failed internally.
    Internal,
}

impl Error {
    fn reason(self) -> libc::c_int {
        match self {
            Error::NullParameter => sys::ERR_R_PASSED_NULL_PARAMETER,
            Error::InvalidArgument => sys::ERR_R_PASSED_INVALID_ARGUMENT,
            Error::OutOfMemory => sys::ERR_R_MALLOC_FAILURE,
            Error::Internal => sys::ERR_R_INTERNAL_ERROR,
        }
    }

    /// Pushes this error, attributed to `func`, onto the calling thread's
    /// OpenSSL error queue (what `ERR_raise(ERR_LIB_SSL, reason)` expands to).
    #[cfg(not(sslasync_ossl111))]
    pub fn raise(self, func: &CStr) {
        // SAFETY: the three calls are the documented expansion of ERR_raise;
        // the file and function strings are NUL-terminated and 'static or
        // outlive the calls, and a NULL format means "no extra data".
        unsafe {
            sys::ERR_new();
            sys::ERR_set_debug(c"sslasync".as_ptr(), 0, func.as_ptr());
            sys::ERR_set_error(sys::ERR_LIB_SSL, self.reason(), std::ptr::null());
        }
    }

    /// Pushes this error onto the calling thread's OpenSSL 1.1.1 error
    /// queue (`SSLerr`); 1.1.1 records function codes, not names, so the
    /// entry carries function code 0 and "sslasync" as its file.
    #[cfg(sslasync_ossl111)]
    pub fn raise(self, _func: &CStr) {
        // SAFETY: ERR_put_error copies nothing but the 'static file pointer.
        unsafe { sys::ERR_put_error(sys::ERR_LIB_SSL, 0, self.reason(), c"sslasync".as_ptr(), 0) };
    }
}
