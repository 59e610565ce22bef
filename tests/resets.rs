//! Faulty clients over real sockets, on the serial, threading and pool strategies: abrupt
//! resets, half-closed connections, clients that vanish mid-reply. The forking strategy meets
//! the same faults in tests/process_faults.rs (in a process of its own).

mod util;

use socketserver::{Activity, Pool, Serial, Strategy, TcpServer, Threading};
use util::faulty::{fault_scenarios, Faulty, FAULT_OUTCOMES};
use util::isolation::shared;
use util::serve;

/// Runs the fault scenarios against a server with `strategy`; returns it stopped.
fn survive_faults<S: Strategy>(
    strategy: S,
) -> socketserver::Server<socketserver::transport::Tcp, Faulty, S> {
    let server = TcpServer::<Faulty>::builder()
        .strategy(strategy)
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    fault_scenarios(running.inet());
    running.stop()
}

fn outcomes(activity: &Activity) -> (u64, u64) {
    (activity.succeeded(), activity.failed())
}

#[test]
fn serial_survives_faults() {
    let _shared = shared();
    let server = survive_faults(Serial);
    let stats = server.stats();
    assert_eq!((stats.succeeded, stats.failed), FAULT_OUTCOMES, "{stats:?}");
    server.close();
}

#[test]
fn threading_survives_faults() {
    let _shared = shared();
    let server = survive_faults(Threading::new());
    let activity = server.strategy().activity().unwrap();
    assert_eq!(server.close().abandoned, 0);
    assert_eq!(outcomes(&activity), FAULT_OUTCOMES);
}

#[test]
fn pool_survives_faults() {
    let _shared = shared();
    let server = survive_faults(Pool::new().workers(2));
    let activity = server.strategy().activity().unwrap();
    assert_eq!(server.close().abandoned, 0);
    assert_eq!(outcomes(&activity), FAULT_OUTCOMES);
}
