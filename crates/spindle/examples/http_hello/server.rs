//! The server of `http_hello`: a minimal HTTP/1.1 keep-alive server that answers every
//! request with the same small body, one green thread per connection.
//!
//! This file is also compiled into `spindle-lab` (`bench http` loads exactly this server),
//! which is why the request scanner is a plain function over bytes: the lab's tokio server
//! answers with the same scanner and the same response.
//!
//! What it understands of HTTP/1.1: a request is its head up to the first empty line
//! (`\r\n\r\n`), then as many body bytes as its `Content-Length` says; several requests may
//! arrive in one read (pipelining) and are answered in order, with one write; a request
//! with `Connection: close` is answered and the connection closed. Anything else in the
//! head is ignored.

#![allow(dead_code)] // each includer uses its part

use std::io::{self, Read, Write};

/// The answer to every request.
pub const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nContent-Type: text/plain\r\n\r\nHello, world!\n";

/// Largest request head accepted; a longer one closes the connection.
pub const MAX_HEAD: usize = 16 * 1024;

/// The complete requests at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Requests {
    /// Bytes they take (heads and bodies).
    pub consumed: usize,
    /// How many.
    pub count: usize,
    /// One of them asked for `Connection: close` (nothing after it is answered).
    pub close: bool,
}

/// Scans `buf` for complete requests. `Err` when a head is too long or a `Content-Length`
/// is not a number: the connection should be closed.
pub fn complete_requests(buf: &[u8]) -> Result<Requests, &'static str> {
    let mut at = 0;
    let mut count = 0;
    while let Some(end) = find(&buf[at..], b"\r\n\r\n") {
        let head = &buf[at..at + end];
        let mut body = 0usize;
        let mut close = false;
        for line in head.split(|&b| b == b'\n').skip(1) {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if name.eq_ignore_ascii_case(b"content-length") {
                body = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or("bad Content-Length")?;
            } else if name.eq_ignore_ascii_case(b"connection") {
                close = value.eq_ignore_ascii_case(b"close");
            }
        }
        let total = end + 4 + body;
        if buf.len() - at < total {
            break; // the body is still on its way
        }
        at += total;
        count += 1;
        if close {
            return Ok(Requests {
                consumed: at,
                count,
                close: true,
            });
        }
    }
    if buf.len() - at > MAX_HEAD {
        return Err("request head too long");
    }
    Ok(Requests {
        consumed: at,
        count,
        close: false,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Serves one connection until the client closes it (or asks to).
pub fn serve_connection(mut stream: impl Read + Write) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    let mut out = Vec::with_capacity(RESPONSE.len() * 4);
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let requests = complete_requests(&buf[..filled])
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))?;
        out.clear();
        for _ in 0..requests.count {
            out.extend_from_slice(RESPONSE);
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
        }
        if requests.close {
            return Ok(());
        }
        buf.copy_within(requests.consumed..filled, 0);
        filled -= requests.consumed;
    }
}

/// Accepts connections forever, each served by a green thread of its own.
pub fn serve(listener: spindle::net::TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        spindle::spawn(move || {
            // A client that resets or sends garbage ends only its own connection.
            let _ = serve_connection(stream);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_pipelined_requests_bodies_and_close() {
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            complete_requests(get).unwrap(),
            Requests {
                consumed: get.len(),
                count: 1,
                close: false
            }
        );
        let two = [&get[..], &get[..], b"GET / HT"].concat();
        let r = complete_requests(&two).unwrap();
        assert_eq!((r.consumed, r.count), (2 * get.len(), 2));
        let post = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab";
        assert_eq!(complete_requests(post).unwrap().count, 0, "body incomplete");
        let post = b"POST / HTTP/1.1\r\ncontent-length:  3 \r\n\r\nabcGET";
        assert_eq!(complete_requests(post).unwrap().consumed, post.len() - 3);
        let close = [
            &b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"[..],
            &get[..],
        ]
        .concat();
        let r = complete_requests(&close).unwrap();
        assert_eq!((r.count, r.close), (1, true));
        assert!(complete_requests(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
    }
}
