// The `Arc` must hold the struct's state type.
use std::sync::Arc;

use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

struct Counter;
struct Config;

#[derive(Handler)]
#[handler(state = Counter)]
struct Count {
    #[handler(state)]
    config: Arc<Config>,
}

impl StreamRequestHandler for Count {
    fn handle(&mut self, _request: &mut StreamRequest<'_, Counter>) -> HandleResult {
        let _ = &self.config;
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Count>::with_state(Counter);
}
