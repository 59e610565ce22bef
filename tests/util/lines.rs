//! A line-echoing handler for the limit and closing tests: it answers each line with the
//! number of open requests, and can report to the test when it started, when each line came
//! (and whether the server was closing then), and when it ended.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;

use crossbeam_channel::{unbounded, Receiver, Sender};
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler};

/// Echoes lines until end-of-file; with state, reports how its request ended.
#[derive(Handler)]
#[handler(state = Probe)]
pub struct Lines;

/// What a [`Lines`] handler tells the test.
#[derive(Default)]
pub struct Probe {
    events: Option<Sender<Event>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The handler started; the server was closing (or not).
    Started { closing: bool },
    /// A line arrived; the server was closing (or not).
    Line { closing: bool },
    /// The handler's read loop ended.
    Ended,
}

impl Probe {
    pub fn channel() -> (Probe, Receiver<Event>) {
        let (tx, rx) = unbounded();
        (Probe { events: Some(tx) }, rx)
    }

    fn send(&self, event: Event) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }
}

impl StreamRequestHandler for Lines {
    fn handle(&mut self, request: &mut StreamRequest<'_, Probe>) -> HandleResult {
        let server = request.server();
        server.state().send(Event::Started {
            closing: server.is_closing(),
        });
        let mut line = String::new();
        let result = loop {
            line.clear();
            match request.rfile.read_line(&mut line) {
                Ok(0) => break Ok(()),
                Ok(_) => {
                    server.state().send(Event::Line {
                        closing: server.is_closing(),
                    });
                    // The number of open requests, so a test can see the cap.
                    let reply = format!("{} {}", server.stats().open, line);
                    if let Err(e) = request.wfile.write_all(reply.as_bytes()) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        server.state().send(Event::Ended);
        result?;
        Ok(())
    }
}

/// Sends `line` and reads the reply line.
pub fn ask(client: &mut TcpStream, line: &str) -> std::io::Result<String> {
    client.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&*client).read_line(&mut reply)?;
    Ok(reply)
}

/// Reads until end-of-file or a reset; `true` if the server ended the connection.
pub fn ends(client: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
