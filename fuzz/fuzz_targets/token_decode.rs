//! The token decoder on arbitrary bytes: never panics, never accepts a forgery.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tether::config::SessionKey;
use tether::token::{KeyRing, Lifetimes, RouteCodec};

fn codec() -> &'static RouteCodec {
    static CODEC: OnceLock<RouteCodec> = OnceLock::new();
    CODEC.get_or_init(|| {
        let ring = KeyRing::new(&[SessionKey { id: "k1".into(), secret: vec![7; 32] }]).unwrap();
        RouteCodec::new(Arc::new(ring), "web", Lifetimes { absolute: Some(3600), idle: Some(600) })
    })
}

fuzz_target!(|data: &[u8]| {
    // Without the key, no input may decode: a hit would be a forgery.
    assert!(codec().decode(data, 1_800_000_000).is_err(), "accepted a token not made with the key");
});
