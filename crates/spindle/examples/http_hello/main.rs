//! A minimal HTTP/1.1 keep-alive server that answers every request with
//! "Hello, world!", one green thread per connection.
//!
//! ```text
//! cargo run --release -p spindle --example http_hello -- [MODEL] [ADDRESS]
//! ```
//!
//! MODEL is `many-to-one` (the default), `one-to-one`, `many-to-many` or `many-to-many:N`;
//! ADDRESS defaults to `127.0.0.1:8080` (port 0 picks a free port). It prints the address
//! it listens on, then serves until killed. `spindle-lab bench http` loads this server
//! (the same `server.rs`) with wrk against tokio.

mod server;

use std::io::Write;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let model: spindle::Model = args.next().as_deref().unwrap_or("many-to-one").parse()?;
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let rt = spindle::Runtime::builder().model(model).build()?;
    rt.block_on(|| {
        let listener = spindle::net::TcpListener::bind(&addr)?;
        println!(
            "http_hello ({model}) listening on http://{}",
            listener.local_addr()?
        );
        std::io::stdout().flush()?;
        server::serve(listener)
    })
}
