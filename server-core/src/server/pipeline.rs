//! The per-request pipeline (Python's `finish_request` and the handler's constructor), run inside
//! a [`Job`](crate::strategy::Job) wherever the strategy puts it.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::addr::{Address, UnixAddress};
use crate::error::{panic_message, RequestError, Stage};
use crate::handler::{DatagramRequestHandler, HandleResult, Handler, StreamRequestHandler};
use crate::request::{Connection, DatagramRequest, StreamRequest};
use crate::server::{edge, RequestOptions, ServerContext, Shared};
use crate::transport::{Accepted, Datagram, Sealed};

/// What runs one request of transport `T` for handler `H`: [`finish_stream`] or
/// [`finish_datagram`], chosen when the server is bound (the transport's `bind` knows which
/// handler trait it needs), so nothing else needs a bound beyond [`Handler`].
pub(crate) type Finish<S, T> = fn(&Shared<S>, <T as Sealed>::Request) -> bool;

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

/// Runs `serve` as one request of the server: counted in its stats (`serve` says whether it
/// succeeded), and marked as running in a handler, where a shutdown must not wait.
fn counted<S>(server: &ServerContext<S>, serve: impl FnOnce() -> bool) -> bool {
    let _in_handler = server.handle().enter_handler();
    let mut active = server.start_request();
    let ok = serve();
    active.succeeded(ok);
    ok
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
pub(crate) fn finish_stream<H: StreamRequestHandler>(
    shared: &Shared<H::State>,
    accepted: Accepted,
) -> bool {
    let server = shared.context();
    let Accepted {
        connection,
        client_address: peer,
    } = accepted;
    // Lets `close` shut the connection down at its deadline; removed (below) before the
    // connection is closed.
    let registered = server
        .handle()
        .connections()
        .register(connection.as_fd().as_raw_fd());
    let options = shared.options();
    // The edge (the PROXY header), before the request counts as running: a connection it
    // refuses is counted as rejected. Marked as in a handler, as `handle_error` may stop the
    // server.
    let edge = {
        let _in_handler = server.handle().enter_handler();
        match edge::prepare(&connection, peer, options) {
            Ok(edge) => edge,
            Err(error) => return edge::refuse(server, &connection, &error),
        }
    };
    // TLS, after the PROXY header: a failed handshake is refused like a bad header.
    let stream = {
        let _in_handler = server.handle().enter_handler();
        match edge::secure(connection, &edge.client, server, options) {
            Ok(stream) => stream,
            Err(connection) => {
                // Unregistered before the descriptor is closed, so a stop cannot shut down
                // a number the system has already given to another connection.
                drop(registered);
                drop(connection);
                return false;
            }
        }
    };
    counted(server, || {
        let client = edge.client;
        match &edge.proxy {
            Some(proxy) => log::debug!(target: "socketserver::request",
                "connection from {client} via proxy {}", proxy.peer()),
            None => log::debug!(target: "socketserver::request", "connection from {client}"),
        }
        let connection = stream.connection();
        apply_options(connection, options, &client);
        let mut request = StreamRequest::new(
            &stream,
            &client,
            server,
            Some(&registered),
            (options.rbufsize, options.wbufsize),
        )
        .with_proxy(edge.proxy.as_ref());
        let stages = [H::setup, H::handle, H::finish];
        let outcome = lifecycle::<H, _>(server, &client, &mut request, stages);
        // Python's finish flushes wfile and ignores errors; a failed flush loses the reply, so
        // it is reported.
        let flushed = !outcome.ran
            || request
                .wfile
                .flush()
                .map_err(|e| {
                    server.handle_error(&RequestError::Handler {
                        client: client.clone(),
                        stage: Stage::Finish,
                        source: e.into(),
                    });
                })
                .is_ok();
        drop(request);
        // Python's shutdown_request: the client sees end-of-file now, even if it shares the
        // socket with a forked process (on TLS, after `close_notify`).
        let _ = stream.shutdown_write();
        drop(registered);
        outcome.ok && flushed
    })
}

/// Serves one datagram, then sends the reply the handler wrote.
pub(crate) fn finish_datagram<H: DatagramRequestHandler>(
    shared: &Shared<H::State>,
    datagram: Datagram,
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
            return outcome.ok;
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
        outcome.ok && sent.is_ok()
    })
}
