//! Stopping a server: the shutdown handle, and the wake-up pair that carries its stop requests to
//! the serving loop.
//!
//! Python's `shutdown()` sets a flag that `serve_forever` notices within `poll_interval` (0.5 s),
//! and deadlocks when called from the serving thread. Here the serving loop sleeps in `poll(2)` on
//! its socket *and* on one end of a socket pair; [`ShutdownHandle::shutdown`] writes a byte to the
//! other end, so the loop wakes at once.
//!
//! A byte on the waker is itself the request to stop, so a stop request also arrives from a forked
//! child (which shares the socket pair but not the parent's memory).

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, ThreadId};

use parking_lot::{Condvar, Mutex};

use crate::server::connections::{Reach, Registry};
use crate::sys::wake;

/// A cloneable, `Send` handle that stops a server's [`serve_forever`](crate::Server::serve_forever).
///
/// Get one with [`Server::shutdown_handle`](crate::Server::shutdown_handle) before serving, or from a
/// handler with [`ServerContext::shutdown_handle`](crate::ServerContext::shutdown_handle).
///
/// # Examples
///
/// ```
/// # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler, TcpServer};
/// # struct Echo;
/// # impl Handler for Echo { type State = (); fn new(_: &ServerContext) -> Self { Echo } }
/// # impl StreamRequestHandler for Echo {
/// #     fn handle(&mut self, _: &mut StreamRequest<'_>) -> HandleResult { Ok(()) }
/// # }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut server = TcpServer::<Echo>::bind("127.0.0.1:0")?;
/// let handle = server.shutdown_handle();
/// let serving = std::thread::spawn(move || server.serve_forever());
/// handle.shutdown(); // returns once serve_forever has returned
/// serving.join().expect("serving thread")?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requested: AtomicBool,
    /// Set with every stop request and kept after `serve_forever` returns, so handlers still
    /// running can tell that the server is closing.
    closing: AtomicBool,
    waker: wake::Notify,
    /// The server's live stream connections: a stop closes the idle ones at once.
    connections: Registry,
    serving: Mutex<Option<ThreadId>>,
    stopped: Condvar,
}

thread_local! {
    /// The `Inner` of the server whose handler runs on this thread, as an address.
    static IN_HANDLER: Cell<usize> = const { Cell::new(0) };
}

/// Where a server's stop requests arrive: the receiving end of its [`ShutdownHandle`]s' wake-up
/// pair, on which the serving loop sleeps in `poll(2)`. A byte on it is a request to stop.
pub(crate) type StopReceiver = wake::Wait;

/// A new shutdown handle and the receiving end its stop requests arrive on.
pub(crate) fn pair() -> io::Result<(ShutdownHandle, StopReceiver)> {
    let (writer, reader) = wake::pair()?;
    let inner = Inner {
        requested: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        waker: writer,
        connections: Registry::default(),
        serving: Mutex::new(None),
        stopped: Condvar::new(),
    };
    Ok((
        ShutdownHandle {
            inner: Arc::new(inner),
        },
        reader,
    ))
}

impl ShutdownHandle {
    /// Asks the server to stop, and waits until `serve_forever` has returned (Python:
    /// `shutdown()`).
    ///
    /// - From another thread while the server serves: wakes the loop at once (no polling
    ///   interval) and returns after `serve_forever` has returned. Requests already running are
    ///   not waited for; closing the server does that (see `close`).
    /// - From inside a handler, or from a hook on the serving thread: only asks, and returns at
    ///   once. Waiting there would deadlock (Python's bpo-39797); the loop stops as soon as the
    ///   current request is done.
    /// - Before `serve_forever` starts, or after it returned: returns at once, and the next
    ///   `serve_forever` returns immediately, as in Python.
    pub fn shutdown(&self) {
        self.shutdown_nowait();
        // Checked before taking the lock: in a forked child the lock may have been held by
        // another thread of the parent at fork time, and would never be released.
        if self.in_handler() {
            return;
        }
        let me = thread::current().id();
        let mut serving = self.inner.serving.lock();
        if *serving == Some(me) {
            return;
        }
        while serving.is_some() {
            self.inner.stopped.wait(&mut serving);
        }
    }

    /// Asks the server to stop and returns at once, without waiting for the loop to return
    /// (as Python's `queue.put_nowait` is to `put`).
    ///
    /// Connections whose handler marked them idle (an HTTP keep-alive connection between
    /// requests; see [`StreamRequest::set_idle`](crate::StreamRequest::set_idle)) are closed
    /// at once; busy ones finish their request.
    pub fn shutdown_nowait(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.requested.store(true, Ordering::SeqCst);
        self.inner.waker.notify();
        self.inner.connections.shutdown(Reach::Idle);
    }

    /// Marks the server as draining: [`is_closing`](Self::is_closing) turns true (the HTTP
    /// layer ends keep-alive, `/readyz` fails) while the loop goes on taking requests, so load
    /// balancers move traffic away before the listener closes.
    pub(crate) fn start_draining(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
    }

    /// Whether a serving loop runs now (and so the server is ready for requests, unless it is
    /// closing).
    #[cfg(feature = "http")] // the metrics listener's /readyz
    pub(crate) fn is_serving(&self) -> bool {
        self.inner.serving.lock().is_some()
    }

    /// Whether a stop has been asked for and not yet acted on.
    pub(crate) fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Whether the server is stopping or closed: a stop was asked for (by this handle, a
    /// signal, or [`Server::close`](crate::Server::close)), and the server has not started
    /// serving again since.
    ///
    /// Unlike the stop request itself, which the loop clears as it acts on it, this stays set
    /// after `serve_forever` has returned, so a handler in a keep-alive loop can poll it
    /// between requests and end its connection early instead of holding up closing. See
    /// [`ServerContext::is_closing`](crate::ServerContext::is_closing).
    pub fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::SeqCst) || self.is_requested()
    }

    /// Marks the server as closing (from `close`), and closes its idle connections.
    pub(crate) fn set_closing(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.connections.shutdown(Reach::Idle);
    }

    /// Registers a live stream connection until the returned guard drops.
    pub(crate) fn register(
        &self,
        fd: std::os::fd::RawFd,
    ) -> crate::server::connections::Registered {
        Registry::register(self, fd)
    }

    /// The server's live stream connections.
    pub(crate) fn connections(&self) -> &Registry {
        &self.inner.connections
    }

    /// Forgets a stop request that was acted on outside `serve_forever`.
    pub(crate) fn clear(&self) {
        self.inner.requested.store(false, Ordering::SeqCst);
    }

    fn in_handler(&self) -> bool {
        IN_HANDLER.with(|h| h.get() == self.id())
    }

    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// Marks this thread as running a handler of this server until the guard drops.
    pub(crate) fn enter_handler(&self) -> HandlerGuard {
        let previous = IN_HANDLER.with(|h| h.replace(self.id()));
        HandlerGuard { previous }
    }

    /// Marks the loop as running on this thread until the guard drops.
    pub(crate) fn start_serving(&self) -> ServingGuard<'_> {
        let mut serving = self.inner.serving.lock();
        if !self.is_requested() {
            // Serving again after an earlier stop: no longer closing.
            self.inner.closing.store(false, Ordering::SeqCst);
            self.inner.connections.reopen();
        }
        *serving = Some(thread::current().id());
        drop(serving);
        ServingGuard { handle: self }
    }
}

/// Clears the in-handler mark on drop.
#[derive(Debug)]
pub(crate) struct HandlerGuard {
    previous: usize,
}

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        IN_HANDLER.with(|h| h.set(self.previous));
    }
}

/// Marks the loop stopped, clears the request and wakes `shutdown` callers on drop.
#[derive(Debug)]
pub(crate) struct ServingGuard<'a> {
    handle: &'a ShutdownHandle,
}

impl Drop for ServingGuard<'_> {
    fn drop(&mut self) {
        let mut serving = self.handle.inner.serving.lock();
        // A stop that came as a byte on the waker (from a forked child) set only `requested`:
        // keep it as `closing`.
        if self.handle.inner.requested.swap(false, Ordering::SeqCst) {
            self.handle.inner.closing.store(true, Ordering::SeqCst);
        }
        *serving = None;
        self.handle.inner.stopped.notify_all();
    }
}
