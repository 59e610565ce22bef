// On the struct, `state` needs the type.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

#[derive(Handler)]
#[handler(state)]
struct Count;

impl StreamRequestHandler for Count {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Count>::builder();
}
