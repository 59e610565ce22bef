// The state field must be the `Arc` the server shares, not the state itself.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

struct Counter;

#[derive(Handler)]
#[handler(state = Counter)]
struct Count {
    #[handler(state)]
    counter: Counter,
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
