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
use std::time::{Duration, Instant};

use log::{Level, LevelFilter};
use parking_lot::Mutex;

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

/// How many messages one [`Limit`] lets through a second.
const PER_SECOND: u32 = 20;

/// A rate limit for a message that can come once per request or per packet (a failing
/// handler, a spawn failure, a datagram from an unbound sender): a flood of clients must not
/// turn into a flood of log lines (129,000 lines in 5 s before this existed). At most
/// [`PER_SECOND`] messages a second pass; the next one that passes says how many were left out.
#[derive(Debug)]
pub(crate) struct Limit {
    window: Mutex<Option<Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    shown: u32,
    /// Left out since the last message shown.
    suppressed: u64,
}

impl Limit {
    pub(crate) const fn new() -> Limit {
        Limit {
            window: Mutex::new(None),
        }
    }

    /// Whether a message may be shown at `now`, and if so how many were left out before it.
    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut window = self.window.lock();
        let current = window.get_or_insert(Window {
            start: now,
            shown: 0,
            suppressed: 0,
        });
        if now.saturating_duration_since(current.start) >= Duration::from_secs(1) {
            current.start = now;
            current.shown = 0;
        }
        if current.shown >= PER_SECOND {
            current.suppressed += 1;
            return None;
        }
        current.shown += 1;
        Some(std::mem::take(&mut current.suppressed))
    }
}

/// [`say`], unless `limit` has let through its share this second.
pub(crate) fn say_limited(limit: &Limit, level: Level, target: &str, message: fmt::Arguments<'_>) {
    match limit.allow_at(Instant::now()) {
        None => {}
        Some(0) => say(level, target, message),
        Some(left_out) => say(
            level,
            target,
            format_args!("{message} ({left_out} more like this were not logged)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_lets_its_share_through_each_second_and_counts_the_rest() {
        let limit = Limit::new();
        let start = Instant::now();
        let shown = (0..1000)
            .filter(|_| limit.allow_at(start).is_some())
            .count();
        assert_eq!(shown, PER_SECOND as usize);
        // The next second: the first message says how many were left out.
        let later = start + Duration::from_secs(1);
        assert_eq!(limit.allow_at(later), Some(1000 - u64::from(PER_SECOND)));
        assert_eq!(limit.allow_at(later), Some(0));
    }
}
