//! WebSocket echo for the load bench (benches/load/websocket.py): a backend and a client.
//!
//! `ws_bench server 127.0.0.1:9100` answers every upgrade (RFC 6455 handshake) and echoes
//! each message back; `ws_bench client 127.0.0.1:8100 SECONDS CONNECTIONS` opens CONNECTIONS
//! upgraded connections through a proxy, each sending a 32-byte text message and waiting for
//! its echo in turn, and prints `messages/s N errors N`. Plain threads, blocking sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const PAYLOAD: &[u8; 32] = b"tether websocket bench message!!";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("server") if args.len() == 3 => server(&args[2]),
        Some("client") if args.len() == 5 => {
            let seconds = args[3].parse().expect("SECONDS");
            let connections = args[4].parse().expect("CONNECTIONS");
            client(&args[2], seconds, connections)
        }
        _ => {
            eprintln!("usage: ws_bench server ADDR | ws_bench client ADDR SECONDS CONNECTIONS");
            std::process::exit(2);
        }
    }
}

fn server(addr: &str) {
    let listener = TcpListener::bind(addr).expect("bind");
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = echo(conn);
        });
    }
}

/// The handshake, then every message echoed until the client goes.
fn echo(conn: TcpStream) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut key = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("sec-websocket-key") {
                key = Some(value.trim().to_string());
            }
        }
    }
    let Some(key) = key else {
        let mut conn = conn;
        return conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    };
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let mut conn = conn;
    conn.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let mut frame = Vec::new();
    loop {
        let mut head = [0u8; 2];
        reader.read_exact(&mut head)?;
        let len = usize::from(head[1] & 0x7f);
        if len > 125 {
            return Ok(()); // the bench sends short messages only
        }
        let mut mask = [0u8; 4];
        if head[1] & 0x80 != 0 {
            reader.read_exact(&mut mask)?;
        }
        frame.resize(2 + len, 0);
        reader.read_exact(&mut frame[2..])?;
        for (i, b) in frame[2..].iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        if head[0] & 0x0f == 0x8 {
            return Ok(()); // close
        }
        frame[0] = head[0];
        frame[1] = len as u8;
        conn.write_all(&frame)?;
    }
}

fn client(addr: &str, seconds: u64, connections: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let (count, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, stop) = (addr.to_string(), stop.clone());
            let (count, errors) = (count.clone(), errors.clone());
            std::thread::spawn(move || {
                if talk(&addr, &stop, &count).is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let warm = count.load(Ordering::Relaxed);
    let measured = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let done = count.load(Ordering::Relaxed) - warm;
    let rate = done as f64 / measured.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let _ = start;
    println!(
        "messages/s {rate:.0} errors {}",
        errors.load(Ordering::Relaxed)
    );
}

/// One upgraded connection, a message and its echo at a time, until `stop`.
fn talk(addr: &str, stop: &AtomicBool, count: &AtomicU64) -> std::io::Result<()> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    conn.write_all(
        b"GET /ws HTTP/1.1\r\nHost: bench.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    if !status.contains(" 101 ") {
        return Err(std::io::Error::other(format!("upgrade answered {status}")));
    }
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim_end().is_empty() {
            break;
        }
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | PAYLOAD.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(PAYLOAD.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut echo = [0u8; 2 + PAYLOAD.len()];
    while !stop.load(Ordering::Relaxed) {
        conn.write_all(&frame)?;
        reader.read_exact(&mut echo)?;
        if &echo[2..] != PAYLOAD {
            return Err(std::io::Error::other("a different echo"));
        }
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
