// A handler is made per request from the server alone, so it has nothing to borrow from.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler};

#[derive(Handler)]
struct Borrowing<'a> {
    name: &'a str,
}

impl<'a> StreamRequestHandler for Borrowing<'a> {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        let _ = self.name;
        Ok(())
    }
}

fn main() {}
