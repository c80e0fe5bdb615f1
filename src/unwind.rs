//! Releasing what the shim holds when a callback never returns normally:
//! the thread ends inside it (`pthread_exit`, cancellation) or `longjmp`s out.
//!
//! The frames between an engine and the user's callback are plain old frames
//! (no destructor pending, no `catch_unwind`), so a forced unwind or a
//! `longjmp` may pass them. What they hold is released by a glibc cleanup
//! handler registered around the call with `_pthread_cleanup_push`: glibc
//! runs it when a forced unwind (thread exit, cancellation) leaves the frame
//! and when `longjmp` jumps over it (`__pthread_cleanup_upto`), and the
//! normal return pops it. The same per-thread list tells a thread how many
//! of a record's claims are its own, without any thread-local of the shim.

use std::mem::MaybeUninit;

use libc::{c_int, c_void};

/// glibc's `struct _pthread_cleanup_buffer` (`<pthread.h>`, public ABI).
#[repr(C)]
struct CleanupBuffer {
    routine: Option<unsafe extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
    canceltype: c_int,
    prev: *mut CleanupBuffer,
}

extern "C" {
    fn _pthread_cleanup_push(
        buffer: *mut CleanupBuffer,
        routine: Option<unsafe extern "C" fn(*mut c_void)>,
        arg: *mut c_void,
    );
    fn _pthread_cleanup_pop(buffer: *mut CleanupBuffer, execute: c_int);
}

/// A cleanup routine and its argument: what [`guarded`] registers.
pub type Routine = unsafe extern "C" fn(*mut c_void);

/// Runs `call` with `routine(arg)` registered to run if the thread never
/// comes back from it (forced unwind or `longjmp` out of it). On a normal
/// return the routine is not run. `call` must leave no destructor pending
/// in the frames it adds between here and any foreign code that may unwind.
#[inline(always)]
pub fn guarded<R>(routine: Routine, arg: *mut c_void, call: impl FnOnce() -> R) -> R {
    let mut buf = MaybeUninit::<CleanupBuffer>::uninit();
    // SAFETY: buf lives in this frame for as long as it is on the thread's
    // list: pushed here, popped below before the frame returns; if the
    // frame is unwound or jumped over, glibc takes it off the list first.
    unsafe { _pthread_cleanup_push(buf.as_mut_ptr(), Some(routine), arg) };
    let r = call();
    // SAFETY: the buffer pushed above, still the newest on this thread's
    // list (whatever `call` pushed, it popped before returning).
    unsafe { _pthread_cleanup_pop(buf.as_mut_ptr(), 0) };
    r
}

/// How many cleanup handlers `routine(arg)` the calling thread has
/// registered right now (the [`guarded`] calls it is inside).
pub fn registered(routine: Routine, arg: *mut c_void) -> usize {
    unsafe extern "C" fn nothing(_: *mut c_void) {}
    let mut probe = MaybeUninit::<CleanupBuffer>::uninit();
    let mut n = 0;
    // SAFETY: pushing a buffer of this frame makes its `prev` the thread's
    // current list head; every buffer on that list lives in a frame that is
    // still running (each is popped or run before its frame goes), and the
    // probe is popped before this frame returns.
    unsafe {
        _pthread_cleanup_push(probe.as_mut_ptr(), Some(nothing), std::ptr::null_mut());
        let mut p = (*probe.as_ptr()).prev;
        while !p.is_null() {
            let b = &*p;
            if b.routine.map(|f| f as usize) == Some(routine as usize) && b.arg == arg {
                n += 1;
            }
            p = b.prev;
        }
        _pthread_cleanup_pop(probe.as_mut_ptr(), 0);
    }
    n
}
