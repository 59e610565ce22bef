// The README's first program without its `#[derive(Handler)]`.
use socketserver::{HandleResult, StreamRequest, StreamRequestHandler, TcpServer};

struct Shout;

impl StreamRequestHandler for Shout {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Shout>::bind("127.0.0.1:0");
}
