// Unions cannot be handlers.
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler};

#[derive(Handler)]
union Bits {
    int: u32,
    float: f32,
}

impl StreamRequestHandler for Bits {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        let _ = unsafe { (self.int, self.float) };
        Ok(())
    }
}

fn main() {}
