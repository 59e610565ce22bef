// A stream handler given to a datagram server.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, UdpServer};

#[derive(Handler)]
struct Shout;

impl StreamRequestHandler for Shout {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        Ok(())
    }
}

fn main() {
    let _ = UdpServer::<Shout>::bind("127.0.0.1:0");
}
