//! Messages for whoever runs the server: through `log` when a logger listens, on standard error
//! when none does.
//!
//! Python's `handle_error` prints the traceback to stderr whatever the logging set-up; a Rust
//! program that installed no logger would otherwise lose every failure without a trace (the
//! client sees end-of-file, and nothing is printed anywhere). So messages that matter to the
//! operator (a failed request, a stop in progress) go to stderr while `log`'s level is off,
//! which is the case until a logger such as `env_logger` is installed.

use std::fmt;
use std::io::Write;
use std::sync::Once;

use log::{Level, LevelFilter};

/// Logs `message` at `level` under `target`, or writes it to stderr when no logger listens.
pub(crate) fn say(level: Level, target: &str, message: fmt::Arguments<'_>) {
    if log::max_level() != LevelFilter::Off {
        log::log!(target: target, level, "{message}");
        return;
    }
    static HINT: Once = Once::new();
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(
        stderr,
        "socketserver: {}: {message}",
        level.as_str().to_lowercase()
    );
    HINT.call_once(|| {
        let _ = writeln!(
            stderr,
            "socketserver: (no logger is installed, so this went to stderr; install one, such as \
             env_logger, to choose what is shown)"
        );
    });
}
