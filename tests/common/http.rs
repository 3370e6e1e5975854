//! A raw HTTP/1.1 client and message parsing, for the tests.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed request or response head.
pub struct Head {
    /// Request target, or the status code for a response.
    pub target: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub raw: String,
}

impl Head {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

pub fn read_message_head(reader: &mut impl BufRead) -> Option<Head> {
    let mut raw = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            if raw.is_empty() {
                continue;
            }
            break;
        }
        raw.push_str(&line);
    }
    let mut lines = raw.lines();
    let first = lines.next()?.to_string();
    let mut parts = first.split_whitespace();
    let a = parts.next()?.to_string();
    let b = parts.next().unwrap_or("").to_string();
    let status = if a.starts_with("HTTP/") {
        b.parse().unwrap_or(0)
    } else {
        0
    };
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Head {
        target: b,
        status,
        headers,
        raw,
    })
}

pub fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    request: bool,
) -> Option<Vec<u8>> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                let mut end = String::new();
                reader.read_line(&mut end).ok()?;
                return Some(body);
            }
            let start = body.len();
            body.resize(start + n, 0);
            reader.read_exact(&mut body[start..]).ok()?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).ok()?;
        }
    }
    if let Some(len) = get("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        return Some(body);
    }
    if request {
        return Some(Vec::new());
    }
    let mut body = Vec::new();
    reader.read_to_end(&mut body).ok()?;
    Some(body)
}

/// A response.
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The backend that answered (`x-backend`), or "" when tether answered itself.
    pub fn backend(&self) -> String {
        self.header("x-backend").unwrap_or("").to_string()
    }
}

/// A client connection (HTTP/1.1 keep-alive).
pub struct Conn {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            stream,
        })
    }

    /// Sends raw bytes and reads one response.
    pub fn send_raw(&mut self, raw: &[u8]) -> std::io::Result<Response> {
        self.stream.write_all(raw)?;
        self.read_response()
    }

    pub fn read_response(&mut self) -> std::io::Result<Response> {
        let bad = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no response");
        let head = read_message_head(&mut self.reader).ok_or_else(bad)?;
        let body = if head.status == 101 || head.status == 204 || head.status == 304 {
            Vec::new()
        } else {
            read_body(&mut self.reader, &head.headers, false).ok_or_else(bad)?
        };
        Ok(Response { head, body })
    }

    /// `GET path` with extra header lines (each without CRLF).
    pub fn get(&mut self, path: &str, headers: &[&str]) -> std::io::Result<Response> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes())
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }
}

/// One `GET` on a new connection.
pub fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> std::io::Result<Response> {
    let mut h: Vec<&str> = headers.to_vec();
    h.push("Connection: close");
    Conn::open(addr)?.get(path, &h)
}
