//! A TCP echo server: every connection gets back what it sends, one green thread per
//! connection.
//!
//! ```text
//! cargo run --release -p spindle --example echo -- [MODEL] [ADDRESS]
//! ```
//!
//! MODEL is `many-to-one` (the default), `one-to-one`, `many-to-many` or `many-to-many:N`;
//! ADDRESS defaults to `127.0.0.1:7007` (port 0 picks a free port). Try it with
//! `nc 127.0.0.1 7007`.

use std::io::{Read, Write};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let model: spindle::Model = args.next().as_deref().unwrap_or("many-to-one").parse()?;
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7007".into());
    let rt = spindle::Runtime::builder().model(model).build()?;
    rt.block_on(|| {
        let listener = spindle::net::TcpListener::bind(&addr)?;
        println!("echo ({model}) listening on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        loop {
            let (mut stream, peer) = listener.accept()?;
            spindle::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            if let Err(e) = stream.write_all(&buf[..n]) {
                                eprintln!("echo: {peer}: {e}");
                                return;
                            }
                        }
                        Err(e) => {
                            eprintln!("echo: {peer}: {e}");
                            return;
                        }
                    }
                }
            });
        }
    })
}
