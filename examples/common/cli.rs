//! What every example's command line shares: the three flags that bound what clients can hold
//! (`--read-timeout`, `--write-timeout`, `--max-connections`), the parsers for their values,
//! serving with the `serving on` line, and the error report at exit.
//!
//! Each example includes this file with `#[path = "common/cli.rs"] mod cli;` (as it includes
//! its protocol module), so a program copied from an example needs this file too. Each example
//! keeps its own defaults, set with [`Defaults`], and states them in its "Limits" table.

use std::fmt::Display;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Arg;
use socketserver::transport::Transport;
use socketserver::{Handler, Server, ServerBuilder, Strategy};

/// The limits every example sets, as flags: put it in the example's `Args` with
/// `#[command(flatten)]`, give it the example's [`Defaults`], and [`apply`](Self::apply) it
/// to the server's builder.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerLimits {
    /// Close a connection that sends nothing for this many seconds.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub read_timeout: Duration,
    /// Drop a client that does not take its answer for this many seconds.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub write_timeout: Duration,
    /// The most connections served at once; more wait in the listen backlog.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub max_connections: usize,
}

impl ServerLimits {
    /// Sets the three limits on `builder`: its `read_timeout`, `write_timeout` and
    /// `max_connections`.
    // guide-sockets (on std::net alone) and guide-upper (which spells the three calls out)
    // apply them by hand.
    #[allow(dead_code)]
    pub fn apply<T: Transport, H: Handler, S: Strategy>(
        &self,
        builder: ServerBuilder<T, H, S>,
    ) -> ServerBuilder<T, H, S> {
        builder
            .read_timeout(Some(self.read_timeout))
            .write_timeout(Some(self.write_timeout))
            .max_connections(Some(self.max_connections))
    }
}

/// One example's defaults for the [`ServerLimits`] flags, written as on the command line
/// (seconds may have fractions). Set them on the example's `Args`:
///
/// ```text
/// #[command(mut_args(Defaults { read_timeout: "10", write_timeout: "10", max_connections: "64" }.flags()))]
/// ```
///
/// Without it the three flags have no default: they are required, and the example says so.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// `--read-timeout`, in seconds.
    pub read_timeout: &'static str,
    /// `--write-timeout`, in seconds.
    pub write_timeout: &'static str,
    /// `--max-connections`.
    pub max_connections: &'static str,
}

impl Defaults {
    /// What `mut_args` applies to each flag of the command: gives the three limits their
    /// defaults (shown by `--help`), and leaves every other flag as it is.
    pub fn flags(self) -> impl FnMut(Arg) -> Arg {
        move |arg| {
            let default = match arg.get_id().as_str() {
                "read_timeout" => self.read_timeout,
                "write_timeout" => self.write_timeout,
                "max_connections" => self.max_connections,
                _ => return arg,
            };
            arg.default_value(default).required(false)
        }
    }
}

/// Parses a count flag: a whole number, at least 1.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{text:?}: {e}")),
    }
}

/// Parses a timeout flag: seconds, fractions allowed, more than zero.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be more than zero seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

/// Serves until Ctrl-C or SIGTERM (`serve_until_signal`), printing `serving on ADDRESS` once
/// the server really serves.
///
/// The line is printed from `on_ready`, after the signal handlers are installed, so a script or
/// a test that sends SIGTERM as soon as it reads the line gets a graceful stop, never the
/// default action (which would leave a Unix socket file behind).
#[allow(dead_code)] // guide-sockets, on std::net alone, has no `Server`
pub fn serve<T: Transport, H: Handler, S: Strategy>(
    mut server: Server<T, H, S>,
) -> Result<(), Box<dyn std::error::Error>> {
    server.on_ready(announce);
    server.serve_until_signal()?;
    Ok(())
}

/// Prints `serving on ADDRESS` on stdout, at once: the line scripts and tests wait for.
pub fn announce(address: &impl Display) {
    let mut stdout = io::stdout().lock();
    // Nobody reading stdout (closed, or a full pipe gone) is no reason to stop serving.
    let _ = writeln!(stdout, "serving on {address}").and_then(|()| stdout.flush());
}

/// The end of `main`: exit 0 on `Ok`, or report the error as `PROGRAM: ERROR` on stderr and
/// exit 1.
pub fn exit_code(program: &str, result: Result<(), impl Display>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}
