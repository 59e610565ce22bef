// A field with no attribute is made with `Default::default()`.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

struct Connection;

#[derive(Handler)]
struct Proxy {
    upstream: Connection,
}

impl StreamRequestHandler for Proxy {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        let _ = &self.upstream;
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Proxy>::builder();
}
