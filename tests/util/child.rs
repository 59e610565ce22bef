//! Watching a child process: its output lines on a channel, and its exit within a deadline.

use std::io::{BufRead, BufReader, Read};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver};

use super::{eventually, PATIENCE};

/// The child's stdout (or stderr) lines, on a channel (so that the test never blocks on a hung
/// child).
pub fn lines_of(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = unbounded();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for the first line with `prefix` in it; returns what follows.
pub fn line_after(lines: &Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let line = lines.recv_deadline(deadline).expect("the child's line");
        // libtest may print its "test child_process ... " on the same line.
        if let Some((_, rest)) = line.split_once(prefix) {
            return rest.to_owned();
        }
    }
}

/// Waits for the child to exit, killing it if it does not within [`PATIENCE`].
pub fn exit_status(child: &mut std::process::Child) -> std::process::ExitStatus {
    let mut status = None;
    let exited = eventually(PATIENCE, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        panic!("the child did not exit");
    }
    status.unwrap()
}
