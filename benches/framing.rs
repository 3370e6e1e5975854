//! Per-request costs of keeping request framing unambiguous: the connection guard following a
//! typical request head and a chunked body, and the request checks of the proxy's first phase.
//! `cargo bench --bench framing`; CI only builds it (`--no-run`): timing is never asserted.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pingora_http::RequestHeader;
use tether::downstream::{Framing, Tracker};
use tether::proxy::normalize_request;

/// A browser-like GET head (about 450 bytes, 9 lines).
const HEAD: &[u8] = b"GET /shop/cart/items?page=2&sort=price HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Cookie: _srv_id=AkUZgPoPJRJZ3uZ0airr7B9vhQV_CyP1sLM4fWhz66JNYiKf0yhlpKfuyoMlAPbIvZwE; theme=dark\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\r\n";

fn chunked_body() -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..4 {
        body.extend_from_slice(b"400;ext=1\r\n");
        body.extend_from_slice(&[b'x'; 0x400]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

fn benches(c: &mut Criterion) {
    c.bench_function("framing: a request head", |b| {
        b.iter(|| {
            let mut t = Tracker::default();
            let s = t.scan(black_box(HEAD)).unwrap();
            t.set_framing(Framing::Length(0));
            black_box(s)
        })
    });
    let body = chunked_body();
    c.bench_function("framing: a 4 KiB chunked body", |b| {
        b.iter_batched(
            || {
                let mut t = Tracker::default();
                t.scan(b"POST / HTTP/1.1\r\n\r\n").unwrap();
                t.set_framing(Framing::Chunked);
                t
            },
            |mut t| black_box(t.scan(black_box(&body)).unwrap()),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("framing: request checks", |b| {
        b.iter_batched(
            || {
                let mut req =
                    RequestHeader::build("GET", b"/shop/cart/items?page=2", None).unwrap();
                req.append_header("Host", "shop.example.com").unwrap();
                req.append_header("Accept", "text/html").unwrap();
                req.append_header("Cookie", "a=1; b=2").unwrap();
                req
            },
            // The request is returned so that dropping it is not timed.
            |mut req| {
                let framing = normalize_request(&mut req);
                black_box((req, framing))
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(framing, benches);
criterion_main!(framing);
