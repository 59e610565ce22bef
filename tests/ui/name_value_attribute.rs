// `#[handler = ...]` is not the attribute's form.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

struct Counter;

#[derive(Handler)]
#[handler = "Counter"]
struct Count;

impl StreamRequestHandler for Count {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Count>::builder();
}

const _: Option<Counter> = None;
