//! Opt-in tracing to stderr: silent unless `SSLASYNC_LOG=debug` (or `trace`).
//! Only slow paths (setup, state changes, dropped callbacks) ever trace.

use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

pub fn init_from_env() {
    let on = std::env::var_os("SSLASYNC_LOG").is_some_and(|v| v == "debug" || v == "trace");
    DEBUG.store(on, Ordering::Relaxed);
}

#[inline]
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Traces one line when `SSLASYNC_LOG=debug`.
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::debug_enabled() {
            // Never panics (unlike eprintln!) if stderr is closed.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "sslasync: {}", format_args!($($arg)*));
        }
    };
}
pub(crate) use debug;
