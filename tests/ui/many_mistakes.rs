// Every mistake is reported in one build, each at its own token.
use std::sync::Arc;

use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler};

struct Counter;

#[derive(Handler)]
#[handler(sate = Counter)]
struct Count<'a> {
    #[handler(state)]
    counter: Arc<Counter>,
    #[handler(default)]
    name: &'a str,
}

impl<'a> StreamRequestHandler for Count<'a> {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        let _ = (&self.counter, self.name);
        Ok(())
    }
}

fn main() {}
