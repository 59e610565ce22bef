// A handler is made from the server alone: there is no variant to pick.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

#[derive(Handler)]
enum Mode {
    Echo,
    Upper,
}

impl StreamRequestHandler for Mode {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        let _ = (Mode::Echo, Mode::Upper);
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Mode>::builder();
}
