//! The per-request pipeline (Python's `finish_request` and the handler's constructor), run inside
//! a [`Job`](crate::strategy::Job) wherever the strategy puts it.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::addr::{Address, UnixAddress};
use crate::error::{panic_message, RequestError, Stage};
use crate::handler::{DatagramRequestHandler, HandleResult, Handler, StreamRequestHandler};
use crate::proxy::{ProxyError, ProxyInfo};
use crate::request::{Connection, DatagramRequest, Memo, Stream, StreamRequest};
use crate::server::admission::Admitted;
use crate::server::connections::Registered;
use crate::server::parking::{Parked, Wake};
use crate::server::{edge, RequestOptions, ServerContext, Shared};
use crate::sys::deadline_in;
use crate::transport::{Accepted, Datagram, Sealed};

/// What runs one request of transport `T` for handler `H`: [`finish_stream`] or
/// [`finish_datagram`], chosen when the server is bound (the transport's `bind` knows which
/// handler trait it needs), so nothing else needs a bound beyond [`Handler`].
/// `Admitted` is the request's place under `max_connections`, held until it ends (a stream
/// connection: until it closes, parked or not).
pub(crate) type Finish<S, T> =
    fn(&Arc<Shared<S>>, <T as Sealed>::Request, Option<Admitted>) -> bool;

/// Runs one stage, turning an error or a panic into a report. `true` if it succeeded.
fn stage<S, F>(stage: Stage, client: &Address, server: &ServerContext<S>, f: F) -> bool
where
    F: FnOnce() -> HandleResult,
{
    // AssertUnwindSafe: after a panic the only things touched again are this request's handler
    // and request objects (finish still runs, as Python's `finally` does), and they are dropped
    // when the request ends. A broken invariant in them cannot leak into other requests; shared
    // state is behind `Sync` types whose own poisoning rules apply.
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => true,
        Ok(Err(source)) => {
            server.handle_error(&RequestError::Handler {
                client: client.clone(),
                stage,
                source,
            });
            false
        }
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            server.handle_error(&RequestError::Panic {
                client: client.clone(),
                stage,
                message,
            });
            false
        }
    }
}

/// What the handler's lifecycle came to.
struct Lifecycle {
    /// `setup` succeeded, so `handle` and `finish` ran.
    ran: bool,
    /// Every stage succeeded.
    ok: bool,
}

/// One of a handler trait's `setup`, `handle` and `finish`, for requests of type `R`.
type Method<H, R> = fn(&mut H, &mut R) -> HandleResult;

/// Makes the handler and runs `[setup, handle, finish]` with Python's rules: nothing after a
/// failed setup; finish even after a failed handle. Failures go to `handle_error`.
fn lifecycle<H: Handler, R>(
    server: &ServerContext<H::State>,
    client: &Address,
    request: &mut R,
    [setup, handle, finish]: [Method<H, R>; 3],
) -> Lifecycle {
    let failed = Lifecycle {
        ran: false,
        ok: false,
    };
    let mut handler = None;
    let made = stage(Stage::New, client, server, || {
        handler = Some(H::new(server));
        Ok(())
    });
    let Some(mut handler) = handler.filter(|_| made) else {
        return failed;
    };
    if !stage(Stage::Setup, client, server, || {
        setup(&mut handler, request)
    }) {
        return failed;
    }
    let handled = stage(Stage::Handle, client, server, || {
        handle(&mut handler, request)
    });
    let finished = stage(Stage::Finish, client, server, || {
        finish(&mut handler, request)
    });
    Lifecycle {
        ran: true,
        ok: handled && finished,
    }
}

/// What one call of a handler came to.
enum Served {
    /// A request, and whether it succeeded.
    Request(bool),
    /// No request: the handler only asked to wait for the client's first bytes parked.
    Nothing,
}

/// Runs `serve` as one request of the server: counted in its stats (`serve` says whether it
/// succeeded, or that it served nothing, which is not counted), and marked as running in a
/// handler, where a shutdown must not wait. `true` unless a request failed.
fn counted<S>(server: &ServerContext<S>, serve: impl FnOnce() -> Served) -> bool {
    let _in_handler = server.handle().enter_handler();
    let mut active = server.start_request();
    match serve() {
        Served::Request(ok) => {
            active.succeeded(ok);
            ok
        }
        Served::Nothing => {
            active.served_nothing();
            true
        }
    }
}

fn apply_options(connection: &Connection, options: &RequestOptions, client: &Address) {
    if options.inherited && matches!(connection, Connection::Tcp(_)) {
        return;
    }
    if options.nodelay {
        if let Connection::Tcp(stream) = connection {
            if let Err(e) = stream.set_nodelay(true) {
                log::debug!(target: "socketserver::request", "TCP_NODELAY for {client}: {e}");
            }
        }
    }
    if let Some(timeout) = options.read_timeout {
        if let Err(e) = connection.set_read_timeout(Some(timeout)) {
            log::debug!(target: "socketserver::request", "read timeout for {client}: {e}");
        }
    }
    if let Some(timeout) = options.write_timeout {
        if let Err(e) = connection.set_write_timeout(Some(timeout)) {
            log::debug!(target: "socketserver::request", "write timeout for {client}: {e}");
        }
    }
}

/// Serves one stream connection: Python's `finish_request` then `shutdown_request`.
/// `admitted` is its place under `max_connections`, held until the connection closes.
pub(crate) fn finish_stream<H: StreamRequestHandler>(
    shared: &Arc<Shared<H::State>>,
    accepted: Accepted,
    admitted: Option<Admitted>,
) -> bool {
    let server = shared.context();
    let Accepted {
        connection,
        client_address: peer,
    } = accepted;
    // Lets `close` shut the connection down at its deadline; removed (below) before the
    // connection is closed.
    let registered = server.handle().register(connection.as_fd().as_raw_fd());
    let options = shared.options();
    // The edge (the PROXY header, then TLS), before the request counts as running: a
    // connection it refuses is counted as rejected. Marked as in a handler, as `handle_error`
    // may stop the server.
    let proxy_read = {
        let _in_handler = server.handle().enter_handler();
        match edge::prepare(&peer, options) {
            Ok(reading) => reading.map(Box::new),
            Err(error) => return edge::refuse(server, &connection, &error),
        }
    };
    if proxy_read.is_none() {
        log::debug!(target: "socketserver::request", "connection from {peer}");
    }
    apply_options(&connection, options, &peer);
    // Boxed once: parking it later hands this box to the lot and back, with no allocation per
    // request.
    let open = Box::new(Open {
        registered,
        stream: Stream::plain(connection),
        proxy_read,
        #[cfg(feature = "tls")]
        handshake: None,
        client: peer,
        proxy: None,
        watched: false,
        served: false,
        memo: Memo::default(),
        shared: Arc::downgrade(shared),
        _admitted: admitted,
        serve: serve::<H>,
    });
    open.proceed(shared)
}

/// A stream connection, from its first request until it closes: served by a worker, or
/// parked in the serving loop between requests.
///
/// Each time it is served is one request, in Python's sense: a handler made for it, `setup`,
/// `handle`, `finish`. A handler that asks to park (the HTTP layer, between keep-alive
/// requests) ends its request with nothing of the next one read, so the next handler starts
/// on a clean connection; handlers need not be `Send`, as none outlives its call.
struct Open<S: Send + Sync + 'static> {
    /// Declared (so dropped) before the stream: a stop must never shut down a descriptor
    /// number the system has given to another connection since.
    registered: Registered,
    stream: Stream,
    /// The PROXY protocol header, until it is read (then `client` and `proxy` are set from
    /// it): where the server parks connections, it waits for the proxy's bytes parked.
    proxy_read: Option<Box<crate::proxy::HeaderRead>>,
    /// The TLS handshake, until it is done: where the server parks connections, it waits for
    /// the client's flights parked, as an idle connection waits for its next request.
    #[cfg(feature = "tls")]
    handshake: Option<Box<crate::tls::Handshake>>,
    /// The client: the peer, or once the PROXY header is read, the client it names.
    client: Address,
    proxy: Option<ProxyInfo>,
    /// Whether the serving loop's epoll instance has the connection (it was parked before).
    watched: bool,
    /// Whether a request was served on it before (it was parked after one, not only during
    /// its handshake or while waiting for its first request).
    served: bool,
    /// What the HTTP layer remembers of the socket between requests.
    memo: Memo,
    /// The server, weakly: a parked connection must not keep a dropped server's part alive.
    shared: Weak<Shared<S>>,
    _admitted: Option<Admitted>,
    /// [`serve`] for the server's handler type (a function pointer, so that the parked
    /// connection does not name the handler type, which need not be `Send` or `'static`).
    serve: ServeFn<S>,
}

/// [`serve`] for one handler type: serves a connection's next request, then parks or closes it.
type ServeFn<S> = fn(Box<Open<S>>, &Arc<Shared<S>>) -> bool;

/// Serves one request on the connection with a handler `H`; then parks it if the handler
/// asked, or closes it. `true` if every handler method succeeded.
fn serve<H: StreamRequestHandler>(
    open: Box<Open<H::State>>,
    shared: &Arc<Shared<H::State>>,
) -> bool {
    open.serve_with::<H>(shared)
}

impl<S: Send + Sync + 'static> Open<S> {
    /// Moves the connection on: the PROXY header while it is not read, then the TLS
    /// handshake while it is not done (each parked while it waits for the client, where the
    /// server parks connections; in `poll` on this worker otherwise), then its next request.
    fn proceed(mut self: Box<Self>, shared: &Arc<Shared<S>>) -> bool {
        let server = shared.context();
        // Parked while it waits, unless the server closes: then it is served to the end
        // here, within the grace period.
        let wait = !shared.parks_now();
        if let Some(reading) = &mut self.proxy_read {
            let read = {
                let _in_handler = server.handle().enter_handler();
                reading.advance(self.stream.connection(), &self.client, wait)
            };
            match read {
                None => {
                    let deadline = reading.deadline();
                    self.park(shared, Some(deadline));
                    return true;
                }
                Some(Err(source)) => return self.refuse_proxy(server, source),
                Some(Ok(info)) => {
                    self.proxy_read = None;
                    log::debug!(target: "socketserver::request",
                        "connection from {} via proxy {}", info.client(), info.peer());
                    self.client = info.client().clone();
                    self.proxy = Some(info);
                }
            }
        }
        // TLS, after the PROXY header: a failed handshake is refused like a bad header.
        #[cfg(feature = "tls")]
        if self.handshake.is_none() && self.stream.tls().is_none() {
            if let Some(config) = &shared.options().tls.config {
                let timeout = shared.options().tls.handshake_timeout;
                match crate::tls::Handshake::start(config, timeout) {
                    Ok(handshake) => self.handshake = Some(Box::new(handshake)),
                    Err(failure) => return self.refuse_handshake(server, &failure),
                }
            }
        }
        #[cfg(feature = "tls")]
        if let Some(handshake) = &mut self.handshake {
            let step = {
                let _in_handler = server.handle().enter_handler();
                handshake.advance(self.stream.connection(), wait)
            };
            match step {
                crate::tls::Step::Done => {
                    if let Some(done) = self.handshake.take() {
                        self.stream.secure(done.into_session());
                    }
                }
                crate::tls::Step::Waiting => {
                    let deadline = handshake.deadline();
                    self.park(shared, Some(deadline));
                    return true;
                }
                crate::tls::Step::Failed(failure) => {
                    return self.refuse_handshake(server, &failure)
                }
            }
        }
        let serve = self.serve;
        serve(self, shared)
    }

    /// Closes a connection whose PROXY header did not come, or was not one; `false`, the
    /// request's outcome. `client` is still the peer.
    fn refuse_proxy(self: Box<Self>, server: &ServerContext<S>, source: ProxyError) -> bool {
        let error = RequestError::ProxyHeader {
            peer: self.client.clone(),
            source,
        };
        edge::refuse(server, self.stream.connection(), &error)
    }

    /// Closes a connection whose handshake failed; `false`, the request's outcome.
    #[cfg(feature = "tls")]
    fn refuse_handshake(
        self: Box<Self>,
        server: &ServerContext<S>,
        failure: &crate::tls::Failure,
    ) -> bool {
        edge::refuse_handshake(server, self.stream.connection(), &self.client, failure)
    }

    /// [`serve`]'s body.
    fn serve_with<H: StreamRequestHandler<State = S>>(
        mut self: Box<Self>,
        shared: &Arc<Shared<S>>,
    ) -> bool {
        let server = shared.context();
        let mut park = None;
        let ok = counted(server, || {
            let options = shared.options();
            let mut request = StreamRequest::new(
                &self.stream,
                &self.client,
                server,
                Some(&self.registered),
                (options.rbufsize, options.wbufsize),
            )
            .with_proxy(self.proxy.as_ref())
            // Not once the server closes: then it is served to the end on this worker.
            .with_parking(shared.parks_now(), self.served)
            .with_memo(&self.memo);
            let stages = [H::setup, H::handle, H::finish];
            let outcome = lifecycle::<H, _>(server, &self.client, &mut request, stages);
            // Python's finish flushes wfile and ignores errors; a failed flush loses the
            // reply, so it is reported.
            let flushed = !outcome.ran
                || request
                    .wfile
                    .flush()
                    .map_err(|e| {
                        server.handle_error(&RequestError::Handler {
                            client: self.client.clone(),
                            stage: Stage::Finish,
                            source: e.into(),
                        });
                    })
                    .is_ok();
            park = request.park.asked();
            if request.park.asked_first() && outcome.ok && flushed {
                return Served::Nothing;
            }
            // Served: from now on it is parked idle between requests.
            self.served |= park.is_some();
            Served::Request(outcome.ok && flushed)
        });
        match park {
            Some(idle) if ok => self.park(shared, idle.map(deadline_in)),
            _ => self.close(),
        }
        ok
    }

    /// Hands the connection to the serving loop until its client sends more, or `deadline`
    /// passes; closes it if the loop will not take it (the server closes).
    fn park(mut self: Box<Self>, shared: &Shared<S>, deadline: Option<Instant>) {
        let Some(lot) = shared.lot() else {
            return self.close();
        };
        let watched = std::mem::replace(&mut self.watched, true);
        if let Err(parked) = lot.park(self, watched, deadline) {
            lot.refused(parked);
        }
    }

    /// Python's shutdown_request: the client sees end-of-file now, even if it shares the
    /// socket with a forked process (on TLS, after `close_notify`). The descriptor closes
    /// when `self` drops.
    fn close(self: Box<Self>) {
        let _ = self.stream.shutdown_write();
    }
}

impl<S: Send + Sync + 'static> Parked for Open<S> {
    fn fd(&self) -> BorrowedFd<'_> {
        self.stream.connection().as_fd()
    }

    /// Idle between requests; not during its TLS handshake, nor while it waits for its
    /// first request (its client connected to send one).
    fn idle(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.handshake.is_some() {
            return false;
        }
        self.served && self.proxy_read.is_none()
    }

    /// Back from the serving loop: moves the handshake on or serves the client's next
    /// request, or closes.
    fn resume(self: Box<Self>, wake: Wake) -> bool {
        let shared = self.shared.upgrade();
        if let (Wake::Readable, Some(shared)) = (wake, &shared) {
            return self.proceed(shared);
        }
        // A PROXY header or a handshake past its deadline: refused as timed out.
        if let Some(shared) = &shared {
            let late = self
                .proxy_read
                .as_ref()
                .filter(|r| Instant::now() >= r.deadline());
            if let Some(error) = late.map(|r| r.timed_out()) {
                return self.refuse_proxy(shared.context(), error);
            }
        }
        #[cfg(feature = "tls")]
        if let Some(shared) = &shared {
            let late = self
                .handshake
                .as_ref()
                .filter(|h| Instant::now() >= h.deadline());
            if let Some(failure) = late.map(|h| h.timed_out()) {
                return self.refuse_handshake(shared.context(), &failure);
            }
        }
        // An idle connection closing (timeout, stop), or the server gone: no request runs, so
        // nothing is counted.
        self.close();
        true
    }
}

impl<S: Send + Sync + 'static> Drop for Open<S> {
    fn drop(&mut self) {
        if self.watched {
            if let Some(lot) = self.shared.upgrade().as_deref().and_then(Shared::lot) {
                lot.forget(self.stream.connection().as_fd());
            }
        }
    }
}

/// Serves one datagram, then sends the reply the handler wrote.
pub(crate) fn finish_datagram<H: DatagramRequestHandler>(
    shared: &Arc<Shared<H::State>>,
    datagram: Datagram,
    _admitted: Option<Admitted>,
) -> bool {
    let server = shared.context();
    counted(server, || {
        let Datagram {
            packet,
            client_address: client,
            socket,
        } = datagram;
        log::trace!(target: "socketserver::request", "{} byte datagram from {client}", packet.len());
        let mut request = DatagramRequest::new(&packet, &socket, &client, server);
        let stages = [H::setup, H::handle, H::finish];
        let outcome = lifecycle::<H, _>(server, &client, &mut request, stages);
        let Some(reply) = request.reply().filter(|_| outcome.ran) else {
            return Served::Request(outcome.ok);
        };
        let sent = match &client {
            Address::Unix(UnixAddress::Unnamed) => {
                Err(RequestError::UnboundClient { len: reply.len() })
            }
            _ => socket
                .send_to(reply, &client)
                .map(drop)
                .map_err(|source| RequestError::Reply {
                    client: client.clone(),
                    source,
                }),
        };
        if let Err(error) = &sent {
            server.handle_error(error);
        }
        Served::Request(outcome.ok && sent.is_ok())
    })
}
