// An option that does not exist, on a field.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};

#[derive(Handler)]
struct Greeter {
    #[handler(skip)]
    name: String,
}

impl StreamRequestHandler for Greeter {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        let _ = &self.name;
        Ok(())
    }
}

fn main() {
    let _ = TcpServer::<Greeter>::builder();
}
