//! The heartbeat pipe between a worker and the supervisor: what goes through it, and how it is
//! read.
//!
//! One pipe per worker (no file on disk: gunicorn's heartbeat file blocks when `/tmp` is on a
//! slow disk, gunicorn #1863). The worker writes small records; each `write(2)` is one whole
//! record, shorter than `PIPE_BUF`, so the kernel never splits or interleaves it, and the
//! worker's end is non-blocking, so a supervisor that does not read cannot stall a worker (a
//! record that does not fit is dropped: the next one carries the same news).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;

use super::figures::Figures;

/// A beat: the worker is alive, with its figures so far ([`Figures::encode`]: fixed length,
/// little endian; well under `PIPE_BUF`).
const BEAT: u8 = b'B';
/// The worker's set-up failed: the message follows (u16 length, little endian, then UTF-8).
const BOOT_ERROR: u8 = b'E';
/// Longest boot error message sent; the rest is cut.
const MAX_MESSAGE: usize = 1024;
/// Most bytes kept from a worker that sends something this module cannot read.
const MAX_BUFFERED: usize = 4096;

/// What a worker said.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Record {
    Beat(Figures),
    BootError(String),
}

/// Writes `record` to the worker's end of the pipe; `false` if it did not fit (or the
/// supervisor is gone).
pub(super) fn send(fd: &OwnedFd, record: &Record) -> bool {
    let mut bytes = Vec::with_capacity(1 + Figures::LEN);
    match record {
        Record::Beat(figures) => {
            bytes.push(BEAT);
            figures.encode(&mut bytes);
        }
        Record::BootError(message) => {
            let mut end = message.len().min(MAX_MESSAGE);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            let text = message.get(..end).unwrap_or_default();
            bytes.push(BOOT_ERROR);
            bytes.extend_from_slice(&u16::try_from(text.len()).unwrap_or(0).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
    }
    loop {
        match nix::unistd::write(fd, &bytes) {
            Ok(n) => return n == bytes.len(),
            Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// The supervisor's side of one worker's pipe: bytes read and not yet a whole record.
#[derive(Debug, Default)]
pub(super) struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    /// Reads what the worker wrote (non-blocking) and returns the whole records; `Ok(true)` in
    /// the second place once the worker's end is closed.
    pub(super) fn read(&mut self, fd: &OwnedFd) -> io::Result<(Vec<Record>, bool)> {
        let mut chunk = [0u8; 512];
        let mut closed = false;
        // Bounded per call: a worker cannot keep the supervisor here.
        for _ in 0..64 {
            match nix::unistd::read(fd.as_raw_fd(), &mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let records = self.records();
        if self.buf.len() > MAX_BUFFERED {
            self.buf.clear();
        }
        Ok((records, closed))
    }

    /// Takes the whole records from the front of the buffer.
    fn records(&mut self) -> Vec<Record> {
        let mut records = Vec::new();
        let mut at = 0;
        loop {
            let rest = self.buf.get(at..).unwrap_or_default();
            let Some((&tag, body)) = rest.split_first() else {
                break;
            };
            match tag {
                BEAT => {
                    let Some(figures) = Figures::decode(body) else {
                        break;
                    };
                    records.push(Record::Beat(figures));
                    at += 1 + Figures::LEN;
                }
                BOOT_ERROR => {
                    let Some(len) = body.get(..2).and_then(|b| <[u8; 2]>::try_from(b).ok()) else {
                        break;
                    };
                    let len = usize::from(u16::from_le_bytes(len));
                    let Some(text) = body.get(2..2 + len) else {
                        break;
                    };
                    records.push(Record::BootError(
                        String::from_utf8_lossy(text).into_owned(),
                    ));
                    at += 3 + len;
                }
                // Not ours: drop everything read so far.
                _ => {
                    at = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..at.min(self.buf.len()));
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(requests: u64) -> Record {
        let mut figures = Figures::default();
        figures.stats.succeeded = requests;
        Record::Beat(figures)
    }

    #[test]
    fn records_cross_the_pipe_whole_and_in_order() {
        let (rx, tx) = super::super::signals::pipe().unwrap();
        assert!(send(&tx, &beat(7)));
        assert!(send(&tx, &Record::BootError("no config".into())));
        assert!(send(&tx, &beat(u64::MAX)));
        drop(tx);
        let mut reader = Reader::default();
        let (records, closed) = reader.read(&rx).unwrap();
        assert_eq!(
            records,
            [
                beat(7),
                Record::BootError("no config".into()),
                beat(u64::MAX)
            ]
        );
        assert!(closed);
    }

    #[test]
    fn a_record_split_between_reads_is_kept_until_whole() {
        let mut whole = vec![BEAT];
        let Record::Beat(figures) = beat(1) else {
            unreachable!()
        };
        figures.encode(&mut whole);
        let mut reader = Reader::default();
        reader.buf.extend_from_slice(&whole[..4]);
        assert!(reader.records().is_empty());
        reader.buf.extend_from_slice(&whole[4..]);
        assert_eq!(reader.records(), [beat(1)]);
        assert!(reader.buf.is_empty());
    }

    #[test]
    fn long_boot_errors_are_cut() {
        let (rx, tx) = super::super::signals::pipe().unwrap();
        assert!(send(&tx, &Record::BootError("é".repeat(MAX_MESSAGE))));
        let (records, _) = Reader::default().read(&rx).unwrap();
        let [Record::BootError(text)] = &records[..] else {
            panic!("{records:?}")
        };
        assert!(text.len() <= MAX_MESSAGE);
    }
}
