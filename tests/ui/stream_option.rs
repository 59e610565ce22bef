// The derive does not write `handle`: that impl is the user's.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

#[derive(Handler)]
#[handler(stream)]
struct Echo;

impl StreamRequestHandler for Echo {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Echo>::builder();
}
