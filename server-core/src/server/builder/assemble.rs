//! From a builder to a server: checking the options, binding, and assembling what the
//! requests share (the context, the shutdown handle, the gate, the lot for parked
//! connections).

use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::sync::Arc;

use super::ServerBuilder;
use crate::addr::Address;
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::server::admission::Gate;
use crate::server::hooks::ErrorHook;
use crate::server::overload::Overload;
use crate::server::parking::Lot;
use crate::server::pipeline::Finish;
use crate::server::{RequestOptions, Server, ServerContext, Shared};
use crate::shutdown::{self, StopReceiver};
use crate::strategy::Strategy;
use crate::sys;
use crate::transport::{SocketFile, Transport};

impl<T: Transport, H: Handler, S: Strategy> ServerBuilder<T, H, S> {
    pub(in crate::server) fn validate(&self) -> Result<()> {
        let invalid = |option, reason: &str| {
            Err(Error::InvalidOption {
                option,
                reason: reason.into(),
            })
        };
        if self.request.rbufsize == 0 {
            return invalid("rbufsize", "must be at least 1 byte");
        }
        if self.max_packet_size == 0 || self.max_packet_size == usize::MAX {
            return invalid(
                "max_packet_size",
                "must be at least 1 byte and less than usize::MAX",
            );
        }
        if self.bind.backlog < 0 {
            return invalid("backlog", "must not be negative");
        }
        if self.poll_interval.is_zero() {
            return invalid("poll_interval", "must be more than zero");
        }
        self.validate_edge()?;
        if self.max_connections == Some(0) {
            return invalid("max_connections", "must be at least 1");
        }
        if let Overload::Queue { timeout, .. } = self.overload {
            if timeout.is_zero() {
                return invalid("overload", "a queue's timeout must be more than zero");
            }
        }
        if self.max_request_time.is_some_and(|t| t.is_zero()) {
            return invalid(
                "max_request_time",
                "must be more than zero (None: no limit)",
            );
        }
        if self.max_per_client == Some(0) {
            return invalid("max_connections_per_client", "must be at least 1");
        }
        // As std's `set_read_timeout` says: a zero timeout would mean none at all.
        if self.request.read_timeout.is_some_and(|t| t.is_zero()) {
            return invalid(
                "read_timeout",
                "must be more than zero (None waits forever)",
            );
        }
        if self.request.write_timeout.is_some_and(|t| t.is_zero()) {
            return invalid(
                "write_timeout",
                "must be more than zero (None waits forever)",
            );
        }
        Ok(())
    }

    pub(in crate::server) fn build(
        self,
        socket: T::Socket,
        server_address: Address,
        socket_file: Option<SocketFile>,
        finish: Finish<H::State, T>,
        busy: &'static [u8],
    ) -> Result<Server<T, H, S>> {
        let datagram = T::listener_fd(&socket).is_none();
        let mut options = self.request.clone();
        if !datagram && matches!(server_address, Address::Inet(_)) {
            options.inherited = set_on_listener(&socket, &options);
        }
        let buf = if datagram {
            // One spare byte tells an oversized datagram from one that fits exactly.
            vec![0; self.max_packet_size + 1]
        } else {
            Vec::new()
        };
        let poll_interval = self.poll_interval;
        let timeout = self.timeout;
        let close_timeout = self.close_timeout;
        let drain_delay = self.drain_delay;
        let max_request_time = self.max_request_time;
        let strategy = self.strategy;
        let hooks = self.loop_hooks;
        let overload = self.overload;
        let (shared, stops) = Parts {
            state: self.state,
            options,
            max_connections: self.max_connections,
            max_per_client: self.max_per_client,
            error_hook: self.error_hook,
        }
        .shared(
            server_address,
            strategy.parks_idle() && T::listener_fd(&socket).is_some(),
        )?;
        let shared = Arc::new(shared);
        Ok(Server {
            socket,
            shared,
            finish,
            busy,
            overload,
            clients_waited: std::cell::Cell::new(false),
            waiting: std::collections::VecDeque::new(),
            always: None,
            hooks,
            strategy,
            stops,
            shortage: None,
            buf,
            socket_file,
            poll_interval,
            timeout,
            close_timeout,
            drain_delay,
            max_request_time,
            last_cut: std::time::Instant::now(),
            last_sample: None,
            on_ready: None,
            on_pass: None,
            signals: None,
            strategy_takes_parked: false,
            _handler: PhantomData,
        })
    }

    /// What requests share, for a server that serves without a socket of its own
    /// ([`serve_connection`](Self::serve_connection)).
    pub(in crate::server) fn into_shared(
        self,
        server_address: Address,
    ) -> Result<Shared<H::State>> {
        let (shared, _stops) = Parts {
            state: self.state,
            options: self.request,
            max_connections: self.max_connections,
            max_per_client: self.max_per_client,
            error_hook: self.error_hook,
        }
        .shared(server_address, false)?;
        Ok(shared)
    }
}

/// What the requests of a server share, before it is made.
struct Parts<St> {
    state: Arc<St>,
    options: RequestOptions,
    max_connections: Option<usize>,
    max_per_client: Option<usize>,
    error_hook: Option<ErrorHook<St>>,
}

impl<St> Parts<St> {
    /// The requests' shared part, and the receiving end of the shutdown handle's wake-ups;
    /// with a lot for idle connections if the strategy `parks` them.
    fn shared(self, server_address: Address, parks: bool) -> Result<(Shared<St>, StopReceiver)> {
        let (shutdown, stops) = shutdown::pair().map_err(|source| Error::Spawn {
            what: "the shutdown waker",
            source,
        })?;
        let gate = Gate::new(self.max_connections, self.max_per_client).map_err(|source| {
            Error::Spawn {
                what: "the connection limit's waker",
                source,
            }
        })?;
        let mut context =
            ServerContext::new(server_address, self.state, shutdown, gate, self.error_hook);
        if parks {
            let lot = Lot::new().map_err(|source| Error::Spawn {
                what: "the epoll instance for idle connections",
                source,
            })?;
            context = context.with_lot(lot);
        }
        Ok((Shared::new(context, self.options), stops))
    }
}

/// Sets `TCP_NODELAY` and the read and write timeouts on a TCP listening socket, for its
/// connections to inherit; `false` (connections set them one by one) if any fails.
fn set_on_listener(listener: &impl AsFd, options: &RequestOptions) -> bool {
    let set = sys::socket::set_connection_options(
        listener,
        options.nodelay,
        options.read_timeout,
        options.write_timeout,
    );
    match set {
        Ok(()) => true,
        Err(e) => {
            log::debug!(target: "socketserver::server",
                "connection options on the listening socket: {e}; setting them per connection");
            false
        }
    }
}
