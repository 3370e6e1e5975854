//! Per-request costs of session persistence: token encode, decode+verify, cookie parsing,
//! finding the token in a request, building the Set-Cookie.
//! `cargo bench --bench token`; CI only builds it (`--no-run`): timing is never asserted.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pingora_http::RequestHeader;
use tether::config::{RouteConfig, SessionKey};
use tether::session::{cookie_values, unix_now, Sessions};
use tether::token::{KeyRing, Lifetimes, RouteCodec, TokenMemo};

fn ring() -> Arc<KeyRing> {
    Arc::new(
        KeyRing::new(&[SessionKey {
            id: "k1".into(),
            secret: b"bench-secret-bench-secret-bench-secret".to_vec(),
        }])
        .unwrap(),
    )
}

fn route() -> RouteConfig {
    let yaml = "services:
  - name: web
    listen: 127.0.0.1:8000
    backends: [127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003, 127.0.0.1:9004]
    session_persistence:
      type: Cookie
      name: _srv_id
      absolute_timeout: 8h
      idle_timeout: 30m
      cookie: {lifetime_type: Permanent}
";
    let config = tether::config::Config::parse(yaml, std::path::Path::new("."), &|_| None).unwrap();
    config.routes.into_iter().next().unwrap()
}

fn codec(c: &mut Criterion) {
    let lifetimes = Lifetimes {
        absolute: Some(8 * 3600),
        idle: Some(1800),
    };
    let ring = ring();
    let tag = ring.backend_tags("web", "web-3")[0];
    let codec = RouteCodec::new(ring, "web", lifetimes);
    let now = unix_now();
    let token = codec.encode(&tag, now - 10, now - 5);
    c.bench_function("token encode", |b| {
        let mut out = String::with_capacity(80);
        b.iter(|| {
            out.clear();
            codec.encode_into(black_box(&tag), now, now, &mut out);
        })
    });
    c.bench_function("token decode+verify", |b| {
        b.iter(|| codec.decode(black_box(token.as_bytes()), now).unwrap())
    });
    c.bench_function("token decode rejects garbage", |b| {
        b.iter(|| codec.decode(black_box(b"not-a-token"), now).unwrap_err())
    });
}

fn request_path(c: &mut Criterion) {
    let route = route();
    let ring = ring();
    let tag = ring.backend_tags("web", "127.0.0.1:9002")[0];
    let sessions = Sessions::new(&ring, &route, 0).unwrap();
    let now = unix_now();
    let cookie = sessions.set_cookie(&tag, now, now, false);
    let token = cookie.split(';').next().unwrap().to_string();
    let header = format!("theme=dark; {token}; lang=en; _ga=GA1.2.3456789.1234567890");
    c.bench_function("cookie header parsing", |b| {
        b.iter(|| cookie_values(black_box(header.as_bytes()), b"_srv_id").next())
    });
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    req.append_header("Host", "example.com").unwrap();
    req.append_header("Cookie", header.as_str()).unwrap();
    c.bench_function("find token in request", |b| {
        b.iter(|| sessions.find(black_box(&req), now, None))
    });
    // A kept-alive connection presenting the same token again.
    let memo = TokenMemo::default();
    c.bench_function("find token in request (remembered)", |b| {
        b.iter(|| sessions.find(black_box(&req), now, Some(&memo)))
    });
    c.bench_function("strip cookie (among others)", |b| {
        b.iter_batched_ref(
            || req.clone(),
            |r| sessions.strip(r).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let mut alone = RequestHeader::build("GET", b"/", None).unwrap();
    alone.append_header("Host", "example.com").unwrap();
    alone.append_header("Cookie", token.as_str()).unwrap();
    c.bench_function("strip cookie (alone)", |b| {
        b.iter_batched_ref(
            || alone.clone(),
            |r| sessions.strip(r).unwrap(),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("build Set-Cookie (Permanent)", |b| {
        b.iter(|| sessions.set_cookie(black_box(&tag), now, now, false))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = codec, request_path
}
criterion_main!(benches);
