//! The socketserver benchmark harness: a load generator, the peer servers, and the side-by-side
//! comparison that writes `BENCHMARKS.md`'s table and chart.
//!
//! ```text
//! cargo run --release -p socketserver-bench -- compare --suite quick
//! cargo run --release -p socketserver-bench -- load --mode tcp --target 127.0.0.1:9000 -c 16
//! cargo run --release -p socketserver-bench -- serve tokio tcp 127.0.0.1:0
//! ```
//!
//! Every load is bounded in time; every server listens on loopback or a Unix socket path.

mod compare;
mod http;
mod load;
mod many;
mod memory;
mod peers;
mod scrape;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmarks for socketserver.
#[derive(Parser, Debug)]
#[command(name = "ssbench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs one peer server (prints `serving on ADDRESS` first).
    Serve(peers::ServeArgs),
    /// Runs one bounded load against a server and prints one JSON line.
    Load(load::LoadArgs),
    /// Starts every server, runs the same loads against each in interleaved rounds, and prints
    /// medians and ratios.
    Compare(compare::CompareArgs),
    /// Measures the echo server's memory with many idle connections.
    Memory(memory::MemoryArgs),
    /// Measures what one scrape of the echo server's `--metrics` listener costs it in CPU.
    ScrapeCost(scrape::CostArgs),
    /// The HTTP scenarios: our HTTP layer against hyper, actix-web, tiny_http and Python.
    Http(http::HttpArgs),
    /// TLS: handshakes per second and echo over TLS, against tokio-rustls.
    Tls(tls::TlsArgs),
    /// Many (10,000) persistent connections: requests/s, p99, RSS and threads.
    Many(many::ManyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => peers::serve(&args),
        Command::Load(args) => load::main(&args),
        Command::Compare(args) => compare::main(&args),
        Command::Memory(args) => memory::main(&args),
        Command::ScrapeCost(args) => scrape::cost(&args),
        Command::Http(args) => http::main(&args),
        Command::Tls(args) => tls::main(&args),
        Command::Many(args) => many::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ssbench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The harness's error type: a message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
