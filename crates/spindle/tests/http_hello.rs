//! The `http_hello` example's server under every model: keep-alive, pipelined requests and
//! `Connection: close`, from a plain std client.

mod common;

#[path = "../examples/http_hello/server.rs"]
mod server;

use std::io::{Read, Write};

/// Reads exactly `n` responses' bytes from `stream`.
fn read_responses(stream: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n * server::RESPONSE.len()];
    stream.read_exact(&mut got).unwrap();
    got
}

cross_model! {
    fn serves_keep_alive_pipelined_and_close(model) {
        let listener = spindle::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The server runs as a green (or kernel) thread of this runtime; the client is a
        // std kernel thread, so neither waits for the other's scheduler.
        let _server = spindle::spawn(move || server::serve(listener));
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let get = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
            s.write_all(get).unwrap();
            assert_eq!(read_responses(&mut s, 1), server::RESPONSE);
            // Three pipelined in one write, the last split across two writes.
            s.write_all(&[&get[..], &get[..], &get[..10]].concat()).unwrap();
            s.write_all(&get[10..]).unwrap();
            assert_eq!(read_responses(&mut s, 3), server::RESPONSE.repeat(3));
            s.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
            assert_eq!(read_responses(&mut s, 1), server::RESPONSE);
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "the server closes after Connection: close");
        });
        // Join without blocking this runtime's only worker (many-to-one).
        spindle::unblock(move || client.join()).unwrap();
        let _ = model;
    }
}
