//! The synchronisation the shim's shared state is built from: the slot
//! atomics (loom's under `--cfg loom`), a lock that a fork()ed child resets,
//! and futex sleeps, so that no waiter of the shim burns a core.
//!
//! The lock is the shim's own rather than a queueing mutex because fork()
//! must be able to take it in its prepare handler and hand the child a clean
//! state: a parked waiter of a queueing mutex would be a thread that no
//! longer exists in the child. A waiter spins briefly, then sleeps on the
//! lock word (futex) until the holder wakes it. No user code ever runs while
//! one is held, and no holder waits for anything else, so a wait on it is
//! never part of a cycle.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicU32;

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize};
pub use std::sync::atomic::Ordering;
#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize};

/// Spins before a waiter goes to sleep: long enough for a holder that is
/// running to finish a few pointer moves, short next to a sleep.
const SPINS: u32 = 100;

/// Sleeps while `*word == expected` (or until woken, or spuriously).
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT_PRIVATE reads the aligned u32 at word and sleeps
    // only while it holds `expected`; a NULL timeout waits until woken.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes every thread sleeping in [`futex_wait`] on `word`.
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE_PRIVATE only looks up sleepers on the address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// Wakes one thread sleeping in [`futex_wait`] on `word`.
fn futex_wake_one(word: &AtomicU32) {
    // SAFETY: as in futex_wake_all.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// The identity of the calling thread (initialisation uses it to tell its
/// own re-entry from another thread's wait).
pub fn current_thread() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// Lock word states.
const FREE: u32 = 0;
const HELD: u32 = 1;
/// Held, and a waiter may be asleep: the unlock must wake one.
const CONTENDED: u32 = 2;

/// A mutual-exclusion lock that can be held across fork() and released in
/// both the parent and the child.
pub struct Lock<T> {
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, which exists for one
// holder of the lock at a time.
unsafe impl<T: Send> Sync for Lock<T> {}

impl<T> Lock<T> {
    pub const fn new(value: T) -> Self {
        Lock {
            state: AtomicU32::new(FREE),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> Guard<'_, T> {
        if self
            .state
            .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        Guard { lock: self }
    }

    #[cold]
    fn lock_contended(&self) {
        for _ in 0..SPINS {
            std::hint::spin_loop();
            if self.state.load(Ordering::Relaxed) == FREE
                && self
                    .state
                    .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        // Taking it as CONTENDED keeps any other sleeper's wake-up owed.
        while self.state.swap(CONTENDED, Ordering::Acquire) != FREE {
            futex_wait(&self.state, CONTENDED);
        }
    }

    fn unlock(&self) {
        if self.state.swap(FREE, Ordering::Release) == CONTENDED {
            futex_wake_one(&self.state);
        }
    }

    /// fork()'s prepare handler: take the lock and keep it past this call.
    pub fn hold_across_fork(&self) {
        std::mem::forget(self.lock());
    }

    /// fork()'s parent handler: release what
    /// [`hold_across_fork`](Self::hold_across_fork) took, waking a waiter.
    ///
    /// # Safety
    /// Only after `hold_across_fork` on this thread (the forking one).
    pub unsafe fn release_after_fork(&self) {
        self.unlock();
    }

    /// fork()'s child handler: the child has no other thread, so no waiter:
    /// the lock is simply free again.
    ///
    /// # Safety
    /// Only after `hold_across_fork` on this thread, in the child.
    pub unsafe fn reset_in_child(&self) {
        self.state.store(FREE, Ordering::Release);
    }
}

pub struct Guard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this thread holds the lock.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_lock_excludes_and_wakes_sleepers() {
        let lock = Arc::new(Lock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let mut g = l.lock();
                        let v = *g;
                        std::hint::black_box(&mut *g);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*lock.lock(), 80_000);
    }

    #[test]
    fn a_waiter_sleeps_instead_of_spinning() {
        // While one thread holds the lock for 200 ms, another that wants it
        // must use almost no CPU.
        let lock = Arc::new(Lock::new(()));
        let g = lock.lock();
        let l = lock.clone();
        let waiter = std::thread::spawn(move || {
            let _g = l.lock();
            thread_cpu_ns()
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(g);
        let cpu = waiter.join().unwrap();
        assert!(cpu < 50_000_000, "the waiter used {cpu} ns of CPU");
    }

    fn thread_cpu_ns() -> u64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: t is a valid timespec to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }
}
