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
/// which does when stderr fails), so it is safe on paths that reach C; no
/// allocation and no lock (std's stderr lock could be held across a
/// fork()), one write (lines of concurrent threads do not interleave).
pub fn line(args: std::fmt::Arguments) {
    use std::fmt::Write as _;
    let mut out = Buf::<512>::new();
    let _ = write!(out, "sslasync: {args}");
    out.end_line();
    write_stderr(out.as_bytes());
}

/// Writes `bytes` to fd 2, with cancellation held off (write() is a
/// cancellation point, and the callers may be inside `catch_unwind`).
pub fn write_stderr(mut bytes: &[u8]) {
    let _quiet = crate::thread::NoCancel::new();
    while !bytes.is_empty() {
        // SAFETY: writes from a live buffer of that length.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            return;
        }
    }
}

/// A fixed buffer that text is formatted into without allocating; what does
/// not fit is cut off.
pub struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    pub fn new() -> Buf<N> {
        Buf {
            bytes: [0; N],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    #[cfg(test)]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Ends the text with a newline, over its last byte if it is full.
    pub fn end_line(&mut self) {
        if self.len == N {
            self.len -= 1;
        }
        self.bytes[self.len] = b'\n';
        self.len += 1;
    }
}

impl<const N: usize> std::fmt::Write for Buf<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = N - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(std::fmt::Error)
        } else {
            Ok(())
        }
    }
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
