//! Stderr output: opt-in tracing (`SSLASYNC_LOG=debug` or `trace`) of slow
//! paths, and the few lines always said (inert, a bad setting).

use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

pub fn init_from_env() {
    let on = matches!(crate::env(c"SSLASYNC_LOG"), Some(b"debug" | b"trace"));
    DEBUG.store(on, Ordering::Relaxed);
}

#[inline]
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Writes one `sslasync: ` line to stderr. Never panics (unlike eprintln!,
/// which does when stderr fails), so it is safe on paths that reach C.
pub fn line(args: std::fmt::Arguments) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "sslasync: {args}");
}

/// One line always said on stderr (inert, a bad setting).
macro_rules! notice {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}
pub(crate) use notice;

/// Traces one line when `SSLASYNC_LOG=debug`.
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::line(format_args!($($arg)*));
        }
    };
}
pub(crate) use debug;
