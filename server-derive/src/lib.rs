//! Derive macros for socketserver request handlers.
//!
//! Use them through the `socketserver` crate, which re-exports them: the generated code names
//! `::socketserver::Handler` (see `#[handler(crate = path)]` to change that). The reference and
//! a runnable example are on [`macro@Handler`].
//!
//! The work is split as in thiserror and serde: `attr` parses the `#[handler(...)]` attributes,
//! `valid` checks what needs the whole input, `expand` writes the impl, and `fallback` writes a
//! stub impl next to the errors when there are mistakes. Every mistake is collected (`ctxt`) and
//! reported at the user's token, all in one build.

#![doc(test(attr(deny(warnings))))]

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

mod attr;
mod ctxt;
mod expand;
mod fallback;
mod valid;

/// Derives `Handler`: how a request handler is made for each request, and the type of the state
/// it shares with every other request of its server.
///
/// Python calls `RequestHandlerClass(request, client_address, server)` for every request. Here
/// the server calls `Handler::new(&ServerContext)`, and this derive writes it: each field is
/// made as its attribute says. The serving itself stays yours to write, by hand:
/// `impl StreamRequestHandler` (TCP, Unix stream) or `impl DatagramRequestHandler` (UDP, Unix
/// datagram), with `handle` and, if needed, `setup`, `finish` and the server hooks.
///
/// # Examples
///
/// A greeter over TCP whose requests count, in shared state, how many greetings were sent:
///
/// ```
/// use std::io::{BufRead, Read, Write};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};
///
/// /// Shared by every request of one server (Python: an attribute of the server).
/// #[derive(Default)]
/// struct Stats {
///     greeted: AtomicUsize,
/// }
///
/// #[derive(Handler)]
/// #[handler(state = Stats)]
/// struct Greeter {
///     /// The server's state, given to every request.
///     #[handler(state)]
///     stats: Arc<Stats>,
///     /// Set for each request from this expression.
///     #[handler(default = String::from("hello"))]
///     greeting: String,
///     /// No attribute: `Default::default()`, an empty `String`.
///     name: String,
/// }
///
/// impl StreamRequestHandler for Greeter {
///     fn handle(&mut self, request: &mut StreamRequest<'_, Stats>) -> HandleResult {
///         request.rfile.read_line(&mut self.name)?;
///         writeln!(request.wfile, "{}, {}", self.greeting, self.name.trim_end())?;
///         self.stats.greeted.fetch_add(1, Ordering::Relaxed);
///         Ok(())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut server = TcpServer::<Greeter>::with_state(Stats::default()).bind("127.0.0.1:0")?;
/// let addr = server.server_address().as_inet().expect("an internet address");
/// let handle = server.shutdown_handle();
/// let serving = std::thread::spawn(move || {
///     let result = server.serve_forever();
///     (server, result)
/// });
///
/// let mut client = std::net::TcpStream::connect(addr)?;
/// client.write_all(b"world\n")?;
/// let mut reply = String::new();
/// client.read_to_string(&mut reply)?; // the server closes the connection after `handle`
/// assert_eq!(reply, "hello, world\n");
///
/// handle.shutdown();
/// let (server, result) = serving.join().expect("serving thread");
/// result?;
/// assert_eq!(server.state().greeted.load(Ordering::Relaxed), 1);
/// # Ok(())
/// # }
/// ```
///
/// # Attributes
///
/// On the struct:
///
/// | Attribute | Without it | What it does |
/// |---|---|---|
/// | `#[handler(state = Type)]` | `()` | Sets `Handler::State`, the state every request of a server shares (Python: attributes of the server object). The server owns it in an `Arc`: pass it to `with_state`, or let `bind`/`builder` make it with `Default`. It must be `Send + Sync + 'static`, because requests may run on several threads at once; put atomics, a `Mutex` or channels inside it for anything that changes. |
/// | `#[handler(crate = path)]` | `::socketserver` | The path through which the generated code reaches `Handler` and `ServerContext`: for a renamed dependency, a re-export, or an alias such as `use socketserver as ss;` with `#[handler(crate = ss)]`. |
///
/// On a field (of a struct with named fields, or of a tuple struct):
///
/// | Attribute | The field starts as |
/// |---|---|
/// | none | `Default::default()` |
/// | `#[handler(state)]` | A clone of the server's `Arc` of the state: write the field's type as `Arc<State>` (`std::sync::Arc`), and give the struct `#[handler(state = State)]`. |
/// | `#[handler(default = expr)]` | `expr`, evaluated anew for each request. |
///
/// Options may share one attribute (`#[handler(state = Stats, crate = ss)]`) or be spread over
/// several; each may be given once. A field takes at most one of `state` and `default`.
///
/// The handler itself needs no `Send`: the server makes it on the thread (or in the process)
/// that runs the request. Only the state is shared across threads.
///
/// # What it derives for
///
/// Structs with named fields, tuple structs and unit structs, with type and const parameters
/// and `where` clauses; the impl carries the struct's own bounds. Not:
///
/// - enums and unions: a handler is made from the server alone, with no way to choose a variant
///   (a field may hold an enum);
/// - lifetime parameters: a handler is made for each request from the server alone, so there is
///   nothing it could borrow. Own the data (`String`, `Vec<u8>`), or share it through the state.
///
/// # Errors
///
/// Each mistake is reported on the token that is wrong, with what to write instead: an unknown
/// option, an option given twice, `state` or `default` without its value (or with one where it
/// takes none), `#[handler]` without parentheses, a `#[handler(state)]` field in a handler with
/// no `state = Type`, or whose type is visibly not an `Arc` (`Counter`, `Rc<Counter>`,
/// `&Counter`), an enum, a union, a lifetime parameter. All of them are reported in one build.
/// The derive then still emits a placeholder `Handler` impl with the state type asked for, so
/// that these are the only errors, with no "trait `Handler` is not implemented" after them.
///
/// # Expansion
///
/// For the `Greeter` above, the derive writes:
///
/// ```text
/// #[automatically_derived]
/// impl ::socketserver::Handler for Greeter {
///     type State = Stats;
///     fn new(server: &::socketserver::ServerContext<Self::State>) -> Self {
///         Self {
///             stats: ::std::sync::Arc::clone(server.state_arc()),
///             greeting: String::from("hello"),
///             name: ::core::default::Default::default(),
///         }
///     }
/// }
/// ```
#[proc_macro_derive(Handler, attributes(handler))]
pub fn derive_handler(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
