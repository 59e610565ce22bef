// A field asks for the shared state, but the struct never says what the state is.
use std::sync::Arc;

use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

struct Counter;

#[derive(Handler)]
struct Count {
    #[handler(state)]
    counter: Arc<Counter>,
}

impl StreamRequestHandler for Count {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        let _ = &self.counter;
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Count>::builder();
}
