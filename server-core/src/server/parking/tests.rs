//! The lot's unit tests: parking, readiness, notifications, idle deadlines, stale events.

use super::*;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

struct Conn(UnixStream, mpsc::Sender<Wake>);

impl Parked for Conn {
    fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    fn resume(self: Box<Self>, wake: Wake) -> bool {
        self.1.send(wake).is_ok()
    }
}

fn conn(tx: &mpsc::Sender<Wake>) -> io::Result<(Resume, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    Ok((Box::new(Conn(ours, tx.clone())), theirs))
}

#[test]
fn a_parked_connection_comes_back_when_its_client_writes() -> io::Result<()> {
    let lot = Lot::new()?;
    let (tx, rx) = mpsc::channel();
    let (parked, mut client) = conn(&tx)?;
    assert!(lot.park(parked, false, None).is_ok());
    assert_eq!(lot.len(), 1);
    assert!(lot.ready().is_empty(), "nothing was sent yet");
    client.write_all(b"x")?;
    let mut ready = lot.ready();
    assert_eq!(ready.len(), 1);
    assert_eq!(lot.len(), 0);
    let parked = ready.pop().ok_or(io::ErrorKind::NotFound)?.resume;
    // One-shot: still readable, but not reported again until parked again.
    assert!(lot.ready().is_empty());
    assert!(lot.park(parked, true, None).is_ok());
    let ready = lot.ready();
    assert_eq!(ready.len(), 1, "re-armed, and the byte is still unread");
    for entry in ready {
        entry.resume.resume(Wake::Readable);
    }
    assert_eq!(rx.try_recv().ok(), Some(Wake::Readable));
    Ok(())
}

#[test]
fn waiting_threads_get_ready_connections_and_notifications_once_each() -> io::Result<()> {
    let lot = Arc::new(Lot::new()?);
    let parked = ParkedConnections::new(Arc::clone(&lot));
    let (tx, rx) = mpsc::channel();
    let short = Some(Duration::from_millis(1));
    assert!(matches!(parked.wait(short), Wakeup::TimedOut));

    let (conn, mut client) = conn(&tx)?;
    assert!(lot.park(conn, false, None).is_ok());
    client.write_all(b"x")?;
    let Wakeup::Request(job) = parked.wait(None) else {
        panic!("the readable connection comes out as a request");
    };
    assert!(parked.is_empty(), "taken out of the lot");
    assert!(job.run());
    assert_eq!(rx.try_recv().ok(), Some(Wake::Readable));

    // Two notifications wake two waits, from any thread, and no third.
    parked.notify();
    parked.notify();
    let other = parked.clone();
    let waiter = std::thread::spawn(move || matches!(other.wait(None), Wakeup::Notified));
    assert!(matches!(parked.wait(None), Wakeup::Notified));
    assert!(waiter.join().unwrap_or(false));
    assert!(matches!(parked.wait(short), Wakeup::TimedOut));
    Ok(())
}

#[test]
fn idle_deadlines_and_close_give_every_connection_back_once() -> io::Result<()> {
    let lot = Lot::new()?;
    let (tx, _rx) = mpsc::channel();
    let (a, _a) = conn(&tx)?;
    let (b, _b) = conn(&tx)?;
    let now = Instant::now();
    assert!(lot.park(a, false, Some(now)).is_ok());
    assert!(lot
        .park(b, false, Some(now + Duration::from_secs(60)))
        .is_ok());
    let mut expired = lot.expired(now);
    assert_eq!(expired.len(), 1);
    assert_eq!(lot.expired(now).len(), 0);
    assert_eq!(lot.close().len(), 1);
    assert_eq!(lot.len(), 0);
    let a = expired.pop().ok_or(io::ErrorKind::NotFound)?;
    assert!(
        lot.park(a, true, None).is_err(),
        "a closing lot takes no more"
    );
    Ok(())
}

#[test]
fn a_stale_event_does_not_resume_the_slots_next_connection() -> io::Result<()> {
    let lot = Lot::new()?;
    let (tx, _rx) = mpsc::channel();
    let (a, mut a_client) = conn(&tx)?;
    let (b, _b_client) = conn(&tx)?;
    let now = Instant::now();
    assert!(lot.park(a, false, Some(now)).is_ok());
    a_client.write_all(b"x")?;
    // a expires before the loop looks at its event, and b takes its slot (a stays open,
    // so epoll still has it).
    let expired = lot.expired(now);
    assert_eq!(expired.len(), 1);
    assert!(lot.park(b, false, None).is_ok());
    assert!(lot.ready().is_empty(), "a's event must not resume b");
    assert_eq!(lot.len(), 1);
    drop(expired);
    Ok(())
}
