// `state = Type` belongs on the struct; a field takes a bare `state`.
use std::sync::Arc;

use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

struct Counter;

#[derive(Handler)]
#[handler(state = Counter)]
struct Count {
    #[handler(state = Counter)]
    counter: Arc<Counter>,
}

impl StreamRequestHandler for Count {
    fn handle(&mut self, _request: &mut StreamRequest<'_, Counter>) -> HandleResult {
        let _ = &self.counter;
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Count>::with_state(Counter);
}
