// `crate = path` must name the socketserver crate or a path to it. The derive cannot know
// whether a path resolves (rustc resolves it after expansion), so this one is rustc's error;
// it points at the path in the attribute, because the generated impl uses the user's tokens.
use socketserver::Handler;

#[derive(Handler)]
#[handler(crate = socketsever)]
struct Echo;

fn main() {}
