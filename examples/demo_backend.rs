//! A demo backend for the quick start: answers every request with a fixed status and body.
//!
//! `demo_backend ADDR STATUS BODY`, e.g. `demo_backend 127.0.0.1:8081 200 "Hello, world"`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: demo_backend ADDR STATUS BODY");
        std::process::exit(2);
    }
    let status: u16 = args[2].parse().expect("STATUS is a number");
    let body = format!("{}\n", args[3]);
    let listener = TcpListener::bind(&args[1]).expect("bind");
    for conn in listener.incoming().flatten() {
        let body = body.clone();
        std::thread::spawn(move || serve(conn, status, &body));
    }
}

/// Answers requests on one keep-alive connection until the client closes it.
fn serve(conn: TcpStream, status: u16, body: &str) {
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut out = conn;
    loop {
        let mut content_length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                if first {
                    continue;
                }
                break;
            }
            first = false;
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut sink = vec![0; content_length];
        if reader.read_exact(&mut sink).is_err() {
            return;
        }
        let reason = if status == 200 {
            "OK"
        } else {
            "Service Unavailable"
        };
        // One write: head and body in separate writes meet Nagle and delayed ACKs (40 ms).
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
