//! The Cookie header parser and stripper on arbitrary bytes: never panic, strip exactly ours.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::session::{cookie_values, without_cookie};

fuzz_target!(|data: &[u8]| {
    let (name, header) = match data.split_first() {
        Some((&n, rest)) => (&b"sid_x"[..(n as usize % 5) + 1], rest),
        None => return,
    };
    let _ = cookie_values(header, name).count();
    let stripped = without_cookie(header, name);
    assert_eq!(cookie_values(&stripped, name).count(), 0);
    assert!(stripped.len() <= header.len());
    assert_eq!(without_cookie(&stripped, name), stripped);
});
