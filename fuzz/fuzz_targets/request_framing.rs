//! The connection guard's request framing on arbitrary client bytes, against httparse.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "framing_check.rs"]
mod framing_check;

fuzz_target!(|data: &[u8]| framing_check::check(data));
