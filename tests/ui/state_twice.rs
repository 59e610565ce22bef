// Two state types for one handler.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

struct Counter;
struct Config;

#[derive(Handler)]
#[handler(state = Counter)]
#[handler(state = Config)]
struct Count;

impl StreamRequestHandler for Count {
    fn handle(&mut self, _request: &mut StreamRequest<'_, Counter>) -> HandleResult {
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Count>::with_state(Counter);
}

const _: Option<Config> = None;
