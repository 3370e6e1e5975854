//! The property of the `request_framing` fuzz target, shared with its replay and the property
//! tests in `tests/properties.rs`: on any bytes, read in pieces of any size, the connection
//! guard's framing tracker never panics, hands over the stream in order, and ends every header
//! section exactly where Pingora's parser (httparse) ends it, so that the two never disagree on
//! where a request begins.

use tether::downstream::{Framing, Tracker};

/// `data`: one byte choosing the piece sizes, then the bytes a client sends.
pub fn check(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut tracker = Tracker::default();
    let mut head_start = 0;
    let mut at = 0;
    let mut step = 0usize;
    while at < stream.len() {
        // Piece sizes from 1 to 16 bytes, cycling from the seed.
        step += 1;
        let size = usize::from(seed.wrapping_mul(step as u8) % 16) + 1;
        let piece = &stream[at..(at + size).min(stream.len())];
        let was_in_head = tracker.in_head();
        let Ok(scanned) = tracker.scan(piece) else {
            return;
        };
        assert!((1..=piece.len()).contains(&scanned.deliver));
        if !was_in_head {
            head_start = at;
        }
        at += scanned.deliver;
        if !(tracker.in_head() || scanned.head_ended) {
            continue;
        }
        let head = &stream[head_start..at];
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut fields);
        let framing = match req.parse(head) {
            Ok(httparse::Status::Complete(n)) => {
                assert!(
                    scanned.head_ended,
                    "httparse ended the head before the tracker"
                );
                assert_eq!(n, head.len(), "the head ends elsewhere for httparse");
                framing_of(req.headers)
            }
            Ok(httparse::Status::Partial) => {
                assert!(
                    !scanned.head_ended,
                    "the tracker ended a head httparse has not"
                );
                continue;
            }
            // Pingora refuses the request and closes the connection.
            Err(_) => return,
        };
        match framing {
            Some(framing) => tracker.set_framing(framing),
            None => return,
        }
    }
}

/// The body framing Pingora reads from these fields; `None` where it refuses the request.
fn framing_of(fields: &[httparse::Header<'_>]) -> Option<Framing> {
    let named = |name: &'static str| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name));
    if named("transfer-encoding").is_some() {
        return Some(Framing::Chunked);
    }
    match named("content-length") {
        Some(field) => std::str::from_utf8(field.value)
            .ok()?
            .trim()
            .parse()
            .ok()
            .map(Framing::Length),
        None => Some(Framing::Length(0)),
    }
}
