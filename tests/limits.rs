//! Connection limits with the real binary: slowloris clients are cut off while others are
//! served, idle keep-alive connections close, a service takes at most `max_connections`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn start(limits: &str) -> (Backend, Tether) {
    let a = Backend::start("a");
    let t = Tether::start_full(
        &format!("limits:\n{limits}"),
        &format!(
            "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n",
            a.addr
        ),
        &[],
    );
    (a, t)
}

/// Reads until the peer closes (Ok(0)) or resets; returns when, or None if still open.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let began = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while began.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(began.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(began.elapsed()),
        }
    }
    None
}

#[test]
fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let (_a, t) = start("  request_header_timeout: 1s\n");
    let mut slow = TcpStream::connect(t.listen).unwrap();
    let began = Instant::now();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut_after = None;
    // One byte every 100 ms: each read is quick, the whole header would take 8 s.
    for &b in request.iter() {
        if slow.write_all(&[b]).is_err() {
            cut_after = Some(began.elapsed());
            break;
        }
        // Others are served meanwhile.
        assert_eq!(get(t.listen, "/", &[]).unwrap().status(), 200);
        thread::sleep(Duration::from_millis(100));
        let mut probe = [0u8; 1];
        slow.set_nonblocking(true).unwrap();
        let closed = matches!(slow.read(&mut probe), Ok(0));
        slow.set_nonblocking(false).unwrap();
        if closed {
            cut_after = Some(began.elapsed());
            break;
        }
    }
    let cut = cut_after.expect("the slow client was never cut off");
    eprintln!("slowloris client cut off after {cut:?} (request_header_timeout 1s)");
    assert!(cut < Duration::from_secs(3), "cut after {cut:?}");
}

/// The header deadline applies to every request of a kept-alive connection, not just the first.
#[test]
fn a_slowloris_second_request_is_cut_off_too() {
    let (_a, t) = start("  request_header_timeout: 1s\n");
    let mut c = Conn::open(t.listen).unwrap();
    assert_eq!(c.get("/", &[]).unwrap().status(), 200);
    let began = Instant::now();
    let mut cut = None;
    for &b in
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
    {
        if c.stream().write_all(&[b]).is_err() {
            cut = Some(began.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(100));
        if closed_within(c.stream(), Duration::from_millis(1)).is_some() {
            cut = Some(began.elapsed());
            break;
        }
    }
    let cut = cut.expect("the slow second request was never cut off");
    eprintln!("slowloris second request cut off after {cut:?}");
    assert!(cut < Duration::from_secs(3), "cut after {cut:?}");
}

#[test]
fn a_slow_body_is_not_cut_by_the_header_deadline() {
    let (_a, t) = start("  request_header_timeout: 1s\n");
    let mut c = Conn::open(t.listen).unwrap();
    c.stream()
        .write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
        .unwrap();
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(100)); // 2 s in all, past the header deadline
        c.stream().write_all(b"z").unwrap();
    }
    let r = c.read_response().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().starts_with("len=20 "), "{}", r.text());
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    let (_a, t) = start("  keepalive_timeout: 1s\n");
    let mut c = Conn::open(t.listen).unwrap();
    assert_eq!(c.get("/", &[]).unwrap().status(), 200);
    // Used again within the timeout: still open.
    thread::sleep(Duration::from_millis(400));
    assert_eq!(c.get("/", &[]).unwrap().status(), 200);
    let closed =
        closed_within(c.stream(), Duration::from_secs(4)).expect("idle connection kept open");
    eprintln!("idle keep-alive connection closed after {closed:?} (keepalive_timeout 1s)");
    assert!(
        closed >= Duration::from_millis(800),
        "closed too early: {closed:?}"
    );
}

/// The cap is per listener: another listener of the same service still takes connections.
#[test]
fn connections_beyond_max_connections_get_503() {
    let a = Backend::start("a");
    let second: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let t = Tether::start_full(
        "limits:\n  max_connections: 3\n",
        &format!(
            "  - name: web\n    listen: [\"{{listen}}\", \"{second}\"]\n    backends: [{}]\n",
            a.addr
        ),
        &[],
    );
    // Three idle connections hold the service's slots.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(t.listen).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(200));
    let r = get(t.listen, "/", &[]).unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        get(second, "/", &[]).unwrap().status(),
        200,
        "the other listener is not full"
    );
    drop(held);
    eventually(Duration::from_secs(5), "a slot free again", || {
        let r = get(t.listen, "/", &[]).ok()?;
        (r.status() == 200).then_some(())
    });
}
