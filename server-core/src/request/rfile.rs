//! `rfile`: buffered reading from a connection whose buffer starts small and grows.

use std::fmt;
use std::io::{self, BufRead, IoSliceMut, Read};

use super::Stream;

/// The buffer's size at its first fill (or `rbufsize`, if smaller).
const FIRST_FILL: usize = 1024;

/// Buffered reading from a connection (Python: the handler's `rfile`), as
/// [`std::io::BufReader`] does it, with one difference: the buffer is made at the first read
/// that needs it, 1 KiB at first, and doubles each time a read fills it, up to `rbufsize`
/// (the builder option; 8 KiB by default, as Python's).
///
/// So a connection costs its buffer only once it is read through it, and an idle connection
/// whose client sends short messages holds 1 KiB, not `rbufsize` (a `BufReader` zero-fills its
/// whole buffer before the first read). Bulk transfers reach the full size after a few reads.
/// Reads of at least `rbufsize` bytes into an empty buffer go straight to the connection, as
/// with `BufReader`, so the HTTP layer's 16 KiB reads never make a buffer at all.
///
/// It implements [`Read`] and [`BufRead`] (`read_line`, `read_until`, `lines`, `fill_buf` and
/// `consume`), plus `BufReader`'s [`buffer`](Self::buffer), [`capacity`](Self::capacity) and
/// [`get_ref`](Self::get_ref).
pub struct Rfile<'a> {
    stream: &'a Stream,
    /// What has been made of the buffer so far (its length is its current size).
    buf: Vec<u8>,
    /// Unread bytes are `buf[pos..filled]`.
    pos: usize,
    filled: usize,
    /// The most the buffer grows to: `rbufsize`.
    capacity: usize,
}

impl<'a> Rfile<'a> {
    pub(crate) fn new(stream: &'a Stream, capacity: usize) -> Rfile<'a> {
        Rfile {
            stream,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            capacity: capacity.max(1),
        }
    }

    /// The bytes read from the connection and not yet consumed.
    pub fn buffer(&self) -> &[u8] {
        self.buf.get(self.pos..self.filled).unwrap_or_default()
    }

    /// The most bytes the buffer holds (`rbufsize`); it starts smaller and grows to this.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The connection's byte stream. Reading from it directly skips what the buffer holds.
    pub fn get_ref(&self) -> &'a Stream {
        self.stream
    }

    /// Drops what the buffer holds.
    fn discard(&mut self) {
        self.pos = 0;
        self.filled = 0;
    }

    /// Makes the buffer for the next fill: first [`FIRST_FILL`], then twice the size each
    /// time the last fill filled it, up to `capacity`.
    fn grow(&mut self) {
        let size = self.buf.len();
        let wanted = if size == 0 {
            FIRST_FILL.min(self.capacity)
        } else if self.filled == size {
            size.saturating_mul(2).min(self.capacity)
        } else {
            size
        };
        if wanted > size {
            self.buf.resize(wanted, 0);
        }
    }
}

impl Read for Rfile<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // A large read into an empty buffer goes straight to the connection (BufReader's
        // rule, with the full capacity as its measure).
        if self.pos == self.filled && out.len() >= self.capacity {
            self.discard();
            let mut stream = self.stream;
            return stream.read(out);
        }
        let n = self.fill_buf()?.read(out)?;
        self.consume(n);
        Ok(n)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let total = bufs.iter().map(|b| b.len()).sum::<usize>();
        if self.pos == self.filled && total >= self.capacity {
            self.discard();
            let mut stream = self.stream;
            return stream.read_vectored(bufs);
        }
        let n = self.fill_buf()?.read_vectored(bufs)?;
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Rfile<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.filled {
            self.grow();
            self.discard();
            let mut stream = self.stream;
            self.filled = stream.read(&mut self.buf)?;
        }
        Ok(self.buffer())
    }

    fn consume(&mut self, amount: usize) {
        self.pos = self.pos.saturating_add(amount).min(self.filled);
    }
}

impl fmt::Debug for Rfile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfile")
            .field("buffered", &(self.filled - self.pos))
            .field("size", &self.buf.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Connection;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn pair() -> io::Result<(Stream, UnixStream)> {
        let (ours, theirs) = UnixStream::pair()?;
        Ok((Stream::plain(Connection::Unix(ours)), theirs))
    }

    #[test]
    fn the_buffer_starts_small_and_doubles_while_reads_fill_it() -> io::Result<()> {
        let (stream, mut client) = pair()?;
        let mut rfile = Rfile::new(&stream, 8192);
        assert_eq!(rfile.buf.len(), 0, "nothing made before the first read");
        client.write_all(b"hello\n")?;
        let mut line = String::new();
        rfile.read_line(&mut line)?;
        assert_eq!(line, "hello\n");
        assert_eq!(
            rfile.buf.len(),
            FIRST_FILL,
            "a short message needs the first size only"
        );
        // 20 KiB in one go: the fills fill the buffer, which doubles to the capacity.
        let bulk = vec![b'x'; 20 * 1024];
        client.write_all(&bulk)?;
        let mut read = vec![0; bulk.len()];
        let mut got = 0;
        while got < bulk.len() {
            let n = rfile.fill_buf()?.len().min(bulk.len() - got);
            read[got..got + n].copy_from_slice(&rfile.buffer()[..n]);
            rfile.consume(n);
            got += n;
        }
        assert_eq!(read, bulk);
        assert_eq!(rfile.buf.len(), 8192, "grown to rbufsize, no further");
        assert_eq!(rfile.capacity(), 8192);
        Ok(())
    }

    #[test]
    fn large_reads_bypass_the_buffer_and_buffered_bytes_come_first() -> io::Result<()> {
        let (stream, mut client) = pair()?;
        let mut rfile = Rfile::new(&stream, 4096);
        client.write_all(b"ab")?;
        let mut big = vec![0; 4096];
        assert_eq!(rfile.read(&mut big)?, 2);
        assert_eq!(&big[..2], b"ab");
        assert_eq!(rfile.buf.len(), 0, "a read of rbufsize made no buffer");
        // A small read buffers; what it left is read before the connection is.
        client.write_all(b"cdef")?;
        let mut one = [0; 1];
        rfile.read_exact(&mut one)?;
        assert_eq!(&one, b"c");
        assert_eq!(rfile.buffer(), b"def");
        assert_eq!(rfile.read(&mut big)?, 3, "the buffered bytes first");
        assert_eq!(&big[..3], b"def");
        drop(client);
        assert_eq!(rfile.read(&mut big)?, 0, "end of file");
        Ok(())
    }
}
