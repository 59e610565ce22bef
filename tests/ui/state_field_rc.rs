// `Rc` is not `Arc`: the state is shared across threads.
use std::rc::Rc;

use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

struct Counter;

#[derive(Handler)]
#[handler(state = Counter)]
struct Count(#[handler(state)] Rc<Counter>);

impl StreamRequestHandler for Count {
    fn handle(&mut self, _request: &mut StreamRequest<'_, Counter>) -> HandleResult {
        let _ = &self.0;
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Count>::with_state(Counter);
}
