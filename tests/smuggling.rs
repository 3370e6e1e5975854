//! Request smuggling and connection reuse, against the real binary in front of a backend that
//! records every request it parses: a connection HTTP says must close is closed, framing that
//! two parsers could read two ways is refused or normalised, pipelined requests are answered
//! in order, and nothing one client sends is executed as another's request.

mod common;

use std::io::{BufRead, Write};
use std::thread;
use std::time::Duration;

use common::recording::{Answer, RecordingBackend};
use common::*;

/// tether with one service in front of `backend`.
fn start(backend: &RecordingBackend) -> Tether {
    Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n    health_check: {{type: none}}\n",
        backend.addr
    ))
}

/// What a client saw on one connection.
struct Seen {
    responses: Vec<Response>,
    /// The connection was closed by tether after the last response.
    closed: bool,
}

impl Seen {
    fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(Response::status).collect()
    }

    fn bodies(&self) -> Vec<String> {
        self.responses.iter().map(Response::text).collect()
    }
}

/// Writes `parts` on a new connection (pausing `gap` between them), then reads responses
/// until the connection closes or nothing more comes for a moment.
fn exchange(t: &Tether, parts: &[&[u8]], gap: Duration) -> Seen {
    let mut conn = Conn::open(t.listen).unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            thread::sleep(gap);
        }
        // tether may have closed already: what it did with the bytes is what is checked.
        let _ = conn.stream().write_all(part);
    }
    read_all(&mut conn)
}

fn read_all(conn: &mut Conn) -> Seen {
    let mut responses = Vec::new();
    loop {
        conn.stream()
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        match conn.reader().fill_buf() {
            Ok([]) => {
                return Seen {
                    responses,
                    closed: true,
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Seen {
                    responses,
                    closed: false,
                }
            }
            Err(_) => {
                return Seen {
                    responses,
                    closed: true,
                }
            }
        }
        conn.stream()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        match conn.read_response() {
            Ok(r) => {
                // A close-delimited body was read to the end: the connection is closed.
                let delimited_by_close =
                    r.header("content-length").is_none() && r.header("transfer-encoding").is_none();
                responses.push(r);
                if delimited_by_close {
                    return Seen {
                        responses,
                        closed: true,
                    };
                }
            }
            Err(_) => {
                return Seen {
                    responses,
                    closed: true,
                }
            }
        }
    }
}

#[test]
fn a_request_with_both_content_length_and_transfer_encoding_closes_the_connection() {
    let backend = RecordingBackend::start(Answer::Length);
    let t = start(&backend);
    // An attacker's request framed two ways (a front proxy reading Content-Length forwards all
    // of it), then a victim's request on the same connection.
    let attack = b"POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /SMUGGLED HTTP/1.1\r\nX-Ignore: ";
    let victim = b"GET /victim HTTP/1.1\r\nHost: a\r\nCookie: victim=secret\r\n\r\n";
    let seen = exchange(&t, &[attack, victim], Duration::from_millis(200));
    assert_eq!(seen.statuses(), [200]);
    assert_eq!(seen.responses[0].header("connection"), Some("close"));
    assert!(seen.closed, "the connection must close after CL+TE");
    backend.wait_for("/first", 1);
    assert!(
        backend.requests_to("SMUGGLED").is_empty(),
        "{:?}",
        backend.requests()
    );
    assert!(backend.requests_to("victim").is_empty());
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn an_http10_request_without_keep_alive_closes_the_connection() {
    let backend = RecordingBackend::start(Answer::Length);
    let t = start(&backend);
    let seen = exchange(
        &t,
        &[b"GET /1 HTTP/1.0\r\n\r\n", b"GET /2 HTTP/1.0\r\n\r\n"],
        Duration::from_millis(200),
    );
    assert_eq!(seen.statuses(), [200]);
    assert_eq!(seen.responses[0].header("connection"), Some("close"));
    assert!(seen.closed);
    assert!(backend.requests_to("/2").is_empty());

    // With keep-alive asked for, an HTTP/1.0 client keeps its connection.
    let seen = exchange(
        &t,
        &[
            b"GET /ka1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"GET /ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ],
        Duration::from_millis(200),
    );
    assert_eq!(seen.bodies(), ["GET /ka1", "GET /ka2"]);
    assert_eq!(seen.responses[1].header("connection"), Some("keep-alive"));
    // How long it stays open is tether's to say, not the backend's.
    assert_eq!(seen.responses[1].header("keep-alive"), None);
}

#[test]
fn http10_clients_get_responses_they_can_read_and_requests_gain_a_host() {
    let backend = RecordingBackend::start(Answer::Chunked);
    let t = start(&backend);
    for request in [
        &b"GET /plain HTTP/1.0\r\n\r\n"[..],
        b"GET /kept HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let seen = exchange(&t, &[request], Duration::ZERO);
        assert_eq!(seen.statuses(), [200]);
        let r = &seen.responses[0];
        assert_eq!(r.header("transfer-encoding"), None, "{}", r.head.raw);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(seen.closed);
        assert!(r.text().starts_with("GET /"), "{}", r.text());
    }
    // HTTP/1.1 clients still get the backend's chunked coding.
    let seen = exchange(
        &t,
        &[b"GET /new HTTP/1.1\r\nHost: a\r\n\r\n"],
        Duration::ZERO,
    );
    assert_eq!(
        seen.responses[0].header("transfer-encoding"),
        Some("chunked")
    );
    assert_eq!(seen.bodies(), ["GET /new"]);
    assert!(!seen.closed);

    let plain = &backend.wait_for("/plain", 1)[0];
    assert_eq!(plain.version, "HTTP/1.1");
    assert_eq!(plain.header("host"), Some(t.listen.to_string().as_str()));
}

#[test]
fn one_content_length_reaches_the_backend() {
    let backend = RecordingBackend::start(Answer::Length);
    let t = start(&backend);
    for (name, lines) in [
        ("twice", "Content-Length: 5\r\nContent-Length: 5\r\n"),
        ("list", "Content-Length: 5, 5\r\n"),
    ] {
        let request = format!("POST /{name} HTTP/1.1\r\nHost: a\r\n{lines}\r\nhello");
        let next = format!("GET /{name}-next HTTP/1.1\r\nHost: a\r\n\r\n");
        let seen = exchange(
            &t,
            &[request.as_bytes(), next.as_bytes()],
            Duration::from_millis(50),
        );
        assert_eq!(seen.statuses(), [200, 200], "{name}");
        let got = &backend.wait_for(&format!("/{name}"), 1)[0];
        assert_eq!(got.all("content-length"), ["5"], "{name}");
        assert_eq!(got.body, b"hello");
    }
    let seen = exchange(
        &t,
        &[b"POST /differ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"],
        Duration::ZERO,
    );
    assert_eq!(seen.statuses(), [400]);
    assert!(seen.closed);
    assert!(backend.requests_to("/differ").is_empty());
}

#[test]
fn framing_headers_that_could_be_read_two_ways_are_refused() {
    let backend = RecordingBackend::start(Answer::Length);
    let t = start(&backend);
    let smuggled = "GET /SMUGGLED HTTP/1.1\r\nHost: a\r\n\r\n";
    for (name, headers, body) in [
        (
            "te-twice",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        (
            "te-list",
            "Transfer-Encoding: chunked, chunked\r\n",
            "0\r\n\r\n",
        ),
        // A backend that maps `_` to `-` (CGI) would take these for framing.
        (
            "te-underscore",
            "Content-Length: 4\r\nTransfer_Encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        ("cl-underscore", "Content_Length: 30\r\n", ""),
    ] {
        let request = format!("POST /{name} HTTP/1.1\r\nHost: a\r\n{headers}\r\n{body}{smuggled}");
        let seen = exchange(&t, &[request.as_bytes()], Duration::ZERO);
        assert_eq!(seen.statuses(), [400], "{name}");
        assert!(seen.closed, "{name}");
        assert!(
            backend.requests().is_empty(),
            "{name}: {:?}",
            backend.requests()
        );
    }
}

#[test]
fn chunked_framing_lines_without_crlf_are_refused() {
    let backend = RecordingBackend::start(Answer::Length);
    let t = start(&backend);
    let smuggled = "GET /SMUGGLED HTTP/1.1\r\nHost: a\r\n\r\n";
    for (name, body) in [
        // A bare LF inside a chunk extension: an LF-tolerant front proxy ends the line there.
        ("ext-lf", format!("5;ext\nhello\r\n0\r\n\r\n{smuggled}")),
        // The same, crafted so that reading the LF as extension text ends the body early.
        (
            "ext-lf-early",
            format!("2;\nAB\r\n30\r\n0\r\n\r\n{smuggled}x\r\n0\r\n\r\n"),
        ),
        ("size-lf", format!("5\nhello\r\n0\r\n\r\n{smuggled}")),
        ("trailer-lf", format!("0\r\nX: 1\n\r\n{smuggled}")),
    ] {
        let request =
            format!("POST /{name} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let seen = exchange(&t, &[request.as_bytes()], Duration::ZERO);
        assert_eq!(seen.statuses(), [400], "{name}");
        assert!(seen.closed, "{name}");
        assert!(
            backend.requests_to("SMUGGLED").is_empty(),
            "{name}: {:?}",
            backend.requests()
        );
        assert!(
            backend.requests_to(&format!("/{name}")).is_empty(),
            "{name}"
        );
    }
    // Extensions ended by CRLF are fine, and the connection goes on.
    let seen = exchange(
        &t,
        &[b"POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n"],
        Duration::ZERO,
    );
    assert_eq!(seen.bodies(), ["POST /ext", "GET /after"]);
    assert_eq!(backend.wait_for("/ext", 1)[0].body, b"hello");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let backend = RecordingBackend::start(Answer::Length);
    let t = start(&backend);
    // Ten in one write.
    let ten: String = (0..10)
        .map(|i| format!("GET /p{i} HTTP/1.1\r\nHost: a\r\n\r\n"))
        .collect();
    let seen = exchange(&t, &[ten.as_bytes()], Duration::ZERO);
    let expect: Vec<String> = (0..10).map(|i| format!("GET /p{i}")).collect();
    assert_eq!(seen.bodies(), expect);
    assert!(!seen.closed);

    // A POST, and a GET written while the POST is being proxied.
    let seen = exchange(
        &t,
        &[
            b"POST /race HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            b"GET /race-next HTTP/1.1\r\nHost: a\r\n\r\n",
        ],
        Duration::from_micros(300),
    );
    assert_eq!(seen.bodies(), ["POST /race", "GET /race-next"]);

    // Bodies of each framing, each followed by another request in the same write.
    let seen = exchange(
        &t,
        &[b"GET /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloPOST /ch HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /last HTTP/1.1\r\nHost: a\r\n\r\n"],
        Duration::ZERO,
    );
    assert_eq!(seen.bodies(), ["GET /cl", "POST /ch", "GET /last"]);
    assert_eq!(backend.wait_for("/ch", 1)[0].body, b"abc");
    let seen = exchange(
        &t,
        &[b"POST /ch2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nPOST /cl2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyzGET /last2 HTTP/1.1\r\nHost: a\r\n\r\n"],
        Duration::ZERO,
    );
    assert_eq!(seen.bodies(), ["POST /ch2", "POST /cl2", "GET /last2"]);
    assert_eq!(backend.wait_for("/cl2", 1)[0].body, b"xyz");
}

#[test]
fn targets_and_hosts_outside_the_uri_syntax_are_refused() {
    let backend = RecordingBackend::start(Answer::Length);
    let t = start(&backend);
    for (name, request) in [
        (
            "utf8",
            &b"GET /caf\xc3\xa9?c=utf8 HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        ),
        (
            "latin1",
            b"GET /caf\xe9?c=latin1 HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "host-space",
            b"GET /?c=host-space HTTP/1.1\r\nHost: a b\r\n\r\n",
        ),
        (
            "host-slash",
            b"GET /?c=host-slash HTTP/1.1\r\nHost: a/b\r\n\r\n",
        ),
    ] {
        let seen = exchange(&t, &[request], Duration::ZERO);
        assert_eq!(seen.statuses(), [400], "{name}");
        assert!(seen.closed, "{name}");
        assert!(
            backend.requests_to(&format!("c={name}")).is_empty(),
            "{name}"
        );
    }
    // The same target percent-encoded goes through as sent.
    let seen = exchange(
        &t,
        &[b"GET /caf%C3%A9?c=encoded HTTP/1.1\r\nHost: a\r\n\r\n"],
        Duration::ZERO,
    );
    assert_eq!(seen.statuses(), [200]);
    assert_eq!(
        backend.wait_for("c=encoded", 1)[0].target,
        "/caf%C3%A9?c=encoded"
    );
}

#[test]
fn a_backend_answering_before_the_body_does_not_get_its_connection_reused() {
    let backend = RecordingBackend::start(Answer::EarlyClose(401));
    let t = start(&backend);
    let body = "x".repeat(64 * 1024);
    for i in 0..2 {
        let head = format!(
            "POST /early{i} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let seen = exchange(
            &t,
            &[head.as_bytes(), body.as_bytes()],
            Duration::from_millis(100),
        );
        assert_eq!(seen.statuses(), [401], "request {i}");
    }
    let first = &backend.wait_for("/early0", 1)[0];
    let second = &backend.wait_for("/early1", 1)[0];
    assert_ne!(first.conn, second.conn, "an upstream connection was reused");
}
