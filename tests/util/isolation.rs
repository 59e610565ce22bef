//! Test isolation inside one test binary (tests are threads of one process): tests that count
//! the process's threads or descriptors, and forking tests, run alone; every other test takes
//! the lock shared.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Held by every forking test until its children are reaped (as nix's tests do): a child must
/// not be reaped or counted by another test.
static FORK_MTX: Mutex<()> = parking_lot::const_mutex(());

/// Taken shared by every test; a test that counts the process's threads or descriptors takes it
/// alone, and so does every forking test.
static ALONE: RwLock<()> = parking_lot::const_rwlock(());

/// Test threads blocked on [`ALONE`]: they exist, but belong to no running test.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// What an ordinary test holds while it runs.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    WAITING.fetch_add(1, Ordering::SeqCst);
    let guard = ALONE.read();
    WAITING.fetch_sub(1, Ordering::SeqCst);
    guard
}

/// What a test that counts threads or descriptors holds while it runs.
pub fn alone() -> RwLockWriteGuard<'static, ()> {
    // A test thread waiting here is no thread of the test running now: count it as waiting too,
    // or two overlapping `alone` tests see each other as a leaked thread.
    WAITING.fetch_add(1, Ordering::SeqCst);
    let guard = ALONE.write();
    WAITING.fetch_sub(1, Ordering::SeqCst);
    guard
}

/// What a forking test holds until its children are reaped: [`FORK_MTX`], and [`ALONE`] so
/// that no other test's thread holds one of std's global locks at the moment of a fork. A
/// child that panics runs the panic hook, which takes the hook and backtrace locks: if another
/// test's handler was panicking just then, the child would hang (see `Forking`'s docs).
pub fn fork_lock() -> (RwLockWriteGuard<'static, ()>, MutexGuard<'static, ()>) {
    let alone = alone();
    (alone, FORK_MTX.lock())
}

/// The process's threads (`Threads:` in `/proc/self/status`), less test threads waiting for
/// [`ALONE`].
///
/// `WAITING` is read first: with `ALONE` held, a thread counted there cannot have ended when
/// the threads are counted, so the result is never too low (a test thread that libtest starts
/// in between makes it too high until that thread counts itself as waiting).
pub fn own_threads() -> usize {
    let waiting = WAITING.load(Ordering::SeqCst);
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let threads: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .expect("a Threads: line")
        .trim()
        .parse()
        .expect("a thread count");
    threads - waiting
}
