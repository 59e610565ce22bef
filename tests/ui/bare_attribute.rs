// `#[handler]` alone says nothing.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

#[derive(Handler)]
struct Greeter {
    #[handler]
    greeting: String,
}

impl StreamRequestHandler for Greeter {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        let _ = &self.greeting;
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Greeter>::builder();
}
