//! Starting the shim's own thread (the fd adapter's poller) with attributes
//! of its own, not those of whichever application thread happens to start it.
//!
//! A thread inherits its creator's scheduling policy, nice value, CPU
//! affinity and signal mask. The first arm may come from an event loop
//! pinned to one CPU and running `SCHED_FIFO`; the poller then runs
//! `SCHED_OTHER` at the process's initial nice value and CPU set (read when
//! the shim loads), with every signal blocked so that the program's signal
//! handlers never run on it.
//!
//! Also here: keeping a thread's cancellation off while the shim's own code
//! runs (see [`NoCancel`]).

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use libc::{c_int, c_void};

/// The process's CPU set when the shim loaded: written once, read without
/// a lock (a lock held by another thread at a fork() would stay held in the
/// child, whose first poller start would then wait for ever).
static CPUS: OnceLock<libc::cpu_set_t> = OnceLock::new();
/// The nice value, or `NO_NICE` when it could not be read.
static NICE: AtomicI32 = AtomicI32::new(NO_NICE);
const NO_NICE: i32 = i32::MIN;

/// Reads the loading thread's CPU set and nice value (at initialisation,
/// normally from the main thread before `main`).
pub fn remember_initial_placement() {
    let mut set = MaybeUninit::<libc::cpu_set_t>::zeroed();
    // SAFETY: set is a cpu_set_t-sized buffer for the calling thread's mask.
    if unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set.as_mut_ptr())
    } == 0
    {
        // SAFETY: filled by sched_getaffinity.
        let _ = CPUS.set(unsafe { set.assume_init() });
    }
    // getpriority may return -1 legitimately: errno tells.
    // SAFETY: errno is thread-local; getpriority has no other effect.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        if *libc::__errno_location() == 0 {
            NICE.store(nice, Ordering::Relaxed);
        }
    }
}

/// The body of a thread started by [`spawn`]; it may unwind (a callback
/// ending the thread).
pub type Main = unsafe extern "C-unwind" fn(*mut c_void) -> *mut c_void;

/// What the new thread runs before `main`: its name and nice value.
struct Start {
    main: Main,
    arg: *mut c_void,
    name: &'static std::ffi::CStr,
}

/// Starts a detached thread named `name` running `main(arg)`, with the
/// attributes described above. False when it cannot be started.
pub fn spawn(name: &'static std::ffi::CStr, main: Main, arg: *mut c_void) -> bool {
    let cpus = CPUS.get();
    // With the initial CPU set first; if the process's cpuset has shrunk
    // since (EINVAL), without it.
    create(name, main, arg, cpus) || (cpus.is_some() && create(name, main, arg, None))
}

fn create(
    name: &'static std::ffi::CStr,
    main: Main,
    arg: *mut c_void,
    cpus: Option<&libc::cpu_set_t>,
) -> bool {
    let layout = std::alloc::Layout::new::<Start>();
    // SAFETY: a non-zero-sized layout; NULL is handled.
    let start = unsafe { std::alloc::alloc(layout) }.cast::<Start>();
    if start.is_null() {
        return false;
    }
    // SAFETY: start points at room for one Start; the thread takes it over.
    unsafe { start.write(Start { main, arg, name }) };
    // SAFETY: attr and the masks are plain data initialised by the calls
    // below; the signal mask is restored before returning; pthread_create
    // gets a start routine of its exact type.
    unsafe {
        let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
        if libc::pthread_attr_init(attr.as_mut_ptr()) != 0 {
            std::alloc::dealloc(start.cast(), layout);
            return false;
        }
        let a = attr.as_mut_ptr();
        libc::pthread_attr_setdetachstate(a, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setinheritsched(a, libc::PTHREAD_EXPLICIT_SCHED);
        libc::pthread_attr_setschedpolicy(a, libc::SCHED_OTHER);
        let param = libc::sched_param { sched_priority: 0 };
        libc::pthread_attr_setschedparam(a, &param);
        if let Some(set) = cpus {
            libc::pthread_attr_setaffinity_np(a, std::mem::size_of::<libc::cpu_set_t>(), set);
        }
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigfillset(all.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr());
        let mut tid = MaybeUninit::<libc::pthread_t>::uninit();
        // The start routine may unwind (a callback ending the thread), so it
        // is "C-unwind"; pthread_create's C type does not say so.
        let routine = std::mem::transmute::<
            unsafe extern "C-unwind" fn(*mut c_void) -> *mut c_void,
            extern "C" fn(*mut c_void) -> *mut c_void,
        >(first_frame);
        let rc = libc::pthread_create(tid.as_mut_ptr(), a, routine, start.cast());
        libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
        libc::pthread_attr_destroy(a);
        if rc != 0 {
            std::alloc::dealloc(start.cast(), layout);
            return false;
        }
    }
    true
}

/// The new thread's first frame: name and nice value, then `main`. No
/// destructor is pending here while `main` runs.
unsafe extern "C-unwind" fn first_frame(p: *mut c_void) -> *mut c_void {
    // SAFETY: p is the Start that `create` wrote and handed over.
    let start = unsafe { p.cast::<Start>().read() };
    // SAFETY: allocated in `create` with this layout; read out above.
    unsafe { std::alloc::dealloc(p.cast(), std::alloc::Layout::new::<Start>()) };
    // SAFETY: naming and re-nicing only the calling thread; failures (a
    // name too long, no right to a lower nice value) change nothing.
    unsafe {
        libc::pthread_setname_np(libc::pthread_self(), start.name.as_ptr());
        let nice = NICE.load(Ordering::Relaxed);
        if nice != NO_NICE {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice as c_int);
        }
    }
    // SAFETY: main is the body the spawner chose, with its argument.
    unsafe { (start.main)(start.arg) }
}

// ---------------------------------------------------------- cancellation

const PTHREAD_CANCEL_ENABLE: c_int = 0;
const PTHREAD_CANCEL_DISABLE: c_int = 1;

extern "C" {
    fn pthread_setcancelstate(state: c_int, old: *mut c_int) -> c_int;
}
extern "C-unwind" {
    // Unwinds (a forced unwind) when a cancellation is pending.
    fn pthread_testcancel();
}

/// Cancellation held off while the shim's own code runs a cancellation
/// point (`close`, `write`, a real `SSL_free` closing its socket): a forced
/// unwind starting there would meet the shim's `catch_unwind` boundaries,
/// where Rust aborts the process on any unwind it did not start. A request
/// arriving meanwhile stays pending and acts at the thread's next
/// cancellation point once the previous state is back. (With the
/// asynchronous cancellation type, which no OpenSSL function supports, a
/// pending request would act inside `pthread_setcancelstate` itself.)
pub struct NoCancel(c_int);

impl NoCancel {
    #[must_use]
    pub fn new() -> NoCancel {
        let mut old = PTHREAD_CANCEL_ENABLE;
        // SAFETY: changes only the calling thread's cancelability.
        unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
        NoCancel(old)
    }
}

impl Drop for NoCancel {
    fn drop(&mut self) {
        // SAFETY: restores the state saved by `new`, on the same thread.
        unsafe { pthread_setcancelstate(self.0, std::ptr::null_mut()) };
    }
}

/// For the shim's own thread, which runs with cancellation off: `f` (the
/// user's callback) runs with it on, and a cancellation requested meanwhile
/// acts when `f` returns, as if at a cancellation point inside it (the
/// caller's frames may unwind; no `catch_unwind` may enclose this call).
pub fn cancellable(f: impl FnOnce()) {
    // SAFETY: changes only the calling thread's cancelability.
    unsafe { pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, std::ptr::null_mut()) };
    f();
    // SAFETY: a cancellation point; its unwind is the callback's thread
    // ending, which the caller's frames allow for.
    unsafe { pthread_testcancel() };
    // SAFETY: as above.
    unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, std::ptr::null_mut()) };
}

/// The shim's own thread starts with cancellation off (see [`cancellable`]).
pub fn cancellation_off() {
    // SAFETY: changes only the calling thread's cancelability.
    unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, std::ptr::null_mut()) };
}
