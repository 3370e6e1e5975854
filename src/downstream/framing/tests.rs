use super::*;
use proptest::prelude::*;

/// Feeds `pieces` one after another, telling `framing` after each header section; returns the
/// bytes delivered and the first error.
fn feed(pieces: &[&[u8]], framing: &[Framing]) -> (Vec<u8>, Option<FramingError>) {
    let mut t = Tracker::default();
    let mut told = framing.iter();
    let mut delivered = Vec::new();
    for piece in pieces {
        let mut rest: &[u8] = piece;
        while !rest.is_empty() {
            match t.scan(rest) {
                Ok(s) => {
                    delivered.extend_from_slice(&rest[..s.deliver]);
                    rest = &rest[s.deliver..];
                    if s.head_ended {
                        match told.next() {
                            Some(f) => t.set_framing(*f),
                            None => return (delivered, None),
                        }
                    }
                }
                Err(e) => return (delivered, Some(e)),
            }
        }
    }
    (delivered, None)
}

/// Every way of cutting `bytes` in two.
fn splits(bytes: &[u8]) -> impl Iterator<Item = [&[u8]; 2]> {
    (0..=bytes.len()).map(move |cut| [&bytes[..cut], &bytes[cut..]])
}

#[test]
fn a_header_section_ends_at_its_first_empty_line_and_the_rest_waits() {
    for (head, rest) in [
        (&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..], &b"GET /2"[..]),
        (b"GET / HTTP/1.1\nHost: a\n\n", b"xyz"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\n", b"\r\n"),
        (b"GET / HTTP/1.1\nHost: a\n\r\n", b"hello"),
        (b"GET / HTTP/1.1\r\n\r\n", b""),
        // Empty lines before the request line are not its end (httparse skips them).
        (b"\r\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", b"body"),
    ] {
        let whole = [head, rest].concat();
        let mut t = Tracker::default();
        let s = t.scan(&whole).unwrap();
        assert_eq!(
            s.deliver,
            head.len(),
            "{:?}",
            head.escape_ascii().to_string()
        );
        assert!(s.head_ended);
        assert!(t.awaits_framing());
        for [a, b] in splits(&whole) {
            let (delivered, err) = feed(&[a, b], &[]);
            assert_eq!(err, None);
            assert_eq!(delivered, head, "split at {}", a.len());
        }
    }
}

#[test]
fn control_characters_in_the_request_line_are_noted() {
    for (head, control) in [
        (&b"GET /a HTTP/1.1\r\nX: \x01\r\n\r\n"[..], false),
        (b"\r\nGET /a HTTP/1.1\n\n", false),
        (b"GET /a\x08b HTTP/1.1\r\n\r\n", true),
        (b"GET /\x00 HTTP/1.1\r\n\r\n", true),
        (b"GET /a\x7f HTTP/1.1\r\n\r\n", true),
        (b"GET\t/ HTTP/1.1\r\n\r\n", true),
        (b"GET /?a\r HTTP/1.1\r\n\r\n", true),
        (b"GET /?a\rHTTP/1.1 HTTP/1.1\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\r\n\r\n", true),
    ] {
        for [a, b] in splits(head) {
            let mut t = Tracker::default();
            t.scan(a).unwrap();
            t.scan(b).unwrap();
            assert_eq!(
                t.request_line_has_control(),
                control,
                "{}",
                head.escape_ascii()
            );
        }
    }
    // Each request is judged on its own line.
    let mut t = Tracker::default();
    t.scan(b"GET /\x01 HTTP/1.1\r\n\r\n").unwrap();
    t.set_framing(Framing::Length(0));
    t.scan(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(!t.request_line_has_control());
}

#[test]
fn an_unfinished_header_section_is_delivered_and_followed() {
    let mut t = Tracker::default();
    assert!(!t.in_head());
    let s = t.scan(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    assert_eq!((s.deliver, s.head_ended), (25, false));
    assert!(t.in_head());
    let s = t.scan(b"\r\nGET").unwrap();
    assert_eq!((s.deliver, s.head_ended), (2, true));
    assert!(!t.in_head());
}

#[test]
fn a_body_of_known_length_is_followed_by_the_next_request() {
    let req = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\n\r\nx";
    for [a, b] in splits(req) {
        let (delivered, err) = feed(&[a, b], &[Framing::Length(5), Framing::Length(0)]);
        assert_eq!(err, None);
        assert_eq!(delivered, req, "split at {}", a.len());
    }
    // A read stops at the end of a body: the next request is for a later read.
    let mut t = Tracker::default();
    t.scan(b"POST / HTTP/1.1\r\n\r\n").unwrap();
    t.set_framing(Framing::Chunked);
    let next = b"0\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
    assert_eq!(t.scan(next).unwrap().deliver, 5);
    let mut t = Tracker::default();
    t.scan(b"POST / HTTP/1.1\r\n\r\n").unwrap();
    t.set_framing(Framing::Length(2));
    assert_eq!(t.scan(b"abGET").unwrap().deliver, 2);
    // Without a body the next request starts right away.
    let mut t = Tracker::default();
    t.scan(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    t.set_framing(Framing::Length(0));
    assert!(!t.in_head());
    t.scan(b"G").unwrap();
    assert!(t.in_head());
}

const CHUNKED_HEAD: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";

fn chunked(body: &[u8]) -> Vec<u8> {
    [CHUNKED_HEAD, body, b"GET /next HTTP/1.1\r\n\r\n"].concat()
}

#[test]
fn valid_chunked_bodies_pass_whole_and_end_where_they_end() {
    for body in [
        &b"5\r\nhello\r\n0\r\n\r\n"[..],
        b"5;ext=1;b=\"q\"\r\nhello\r\n0\r\n\r\n",
        b"5 \t;e\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n",
        b"3\r\na\nb\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n",
        b"0000000000000005\r\nhello\r\n0\r\n\r\n",
        b"0;last\r\n\r\n",
    ] {
        let stream = chunked(body);
        for [a, b] in splits(&stream) {
            let (delivered, err) = feed(&[a, b], &[Framing::Chunked, Framing::Length(0)]);
            assert_eq!(err, None, "{:?}", body.escape_ascii().to_string());
            assert_eq!(delivered, stream, "split at {}", a.len());
        }
    }
}

#[test]
fn chunked_framing_lines_must_end_in_crlf() {
    for (body, expect) in [
        // The smuggling pattern: a bare LF inside an extension.
        (
            &b"5;ext\nhello\r\n0\r\n\r\n"[..],
            FramingError::ChunkLineEnd,
        ),
        (b"5\nhello\r\n0\r\n\r\n", FramingError::ChunkLineEnd),
        (b"5 \nhello\r\n0\r\n\r\n", FramingError::ChunkLineEnd),
        (b"5;a\rb\r\nhello\r\n0\r\n\r\n", FramingError::ChunkLineEnd),
        (b"5\r\nhello\n0\r\n\r\n", FramingError::ChunkLineEnd),
        (b"5\r\nhelloX\r\n0\r\n\r\n", FramingError::ChunkLineEnd),
        (b"0\r\n\n", FramingError::ChunkLineEnd),
        (b"0\r\nX: 1\n\r\n", FramingError::ChunkLineEnd),
        (b"0\r\nX: 1\r\r\n\r\n", FramingError::ChunkLineEnd),
        (b"0\r\n\rX", FramingError::ChunkLineEnd),
        (
            b"00000000000000005\r\nhello\r\n0\r\n\r\n",
            FramingError::ChunkSize,
        ),
        (b"-5\r\nhello\r\n0\r\n\r\n", FramingError::ChunkSize),
        (b"5 5\r\nhello\r\n0\r\n\r\n", FramingError::ChunkSize),
        (b"0x5\r\nhello\r\n0\r\n\r\n", FramingError::ChunkSize),
    ] {
        let stream = chunked(body);
        for [a, b] in splits(&stream) {
            let (delivered, err) = feed(&[a, b], &[Framing::Chunked, Framing::Length(0)]);
            assert_eq!(
                err,
                Some(expect),
                "{:?} split at {}",
                body.escape_ascii().to_string(),
                a.len()
            );
            // Nothing past the bad byte reaches Pingora: not the next request.
            assert!(delivered.len() < stream.len() - 22);
        }
        // Once refused, the connection stays refused.
        let mut t = Tracker::default();
        t.scan(CHUNKED_HEAD).unwrap();
        t.set_framing(Framing::Chunked);
        assert!(t.scan(body).is_err());
        assert_eq!(t.scan(b"0\r\n\r\n"), Err(expect));
    }
}

#[test]
fn out_of_step_framing_fails_the_connection() {
    // Bytes read while a header section awaits its framing.
    let mut t = Tracker::default();
    t.scan(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(t.scan(b"x"), Err(FramingError::Desync));
    // Framing told while no header section awaits it.
    let mut t = Tracker::default();
    t.scan(b"GET / HTTP/1.1\r\n").unwrap();
    t.set_framing(Framing::Length(3));
    assert_eq!(t.scan(b"\r\n"), Err(FramingError::Desync));
}

#[test]
fn after_an_upgrade_bytes_pass_untouched() {
    let mut t = Tracker::default();
    t.scan(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
        .unwrap();
    t.set_framing(Framing::Length(0));
    // Frames sent early look like anything, even a header section.
    t.scan(b"\x81\x05\n\nhello").unwrap();
    t.set_framing(Framing::PassThrough);
    let frames = b"\n\r\n\n\r\n5;x\nGET / HTTP/1.1\r\n\r\n";
    assert_eq!(t.scan(frames).unwrap().deliver, frames.len());
    assert!(!t.in_head());
}

/// One valid chunked encoding of `data` in `sizes`-long pieces, with the given extensions.
fn encode(data: &[u8], sizes: &[usize], ext: &str, upper: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let n = n.clamp(1, rest.len());
        let size = if upper {
            format!("{n:X}")
        } else {
            format!("{n:x}")
        };
        out.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(format!("0{ext}\r\n\r\n").as_bytes());
    out
}

proptest! {
    #[test]
    fn any_valid_chunked_body_in_any_pieces_ends_exactly_at_its_end(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        sizes in proptest::collection::vec(1usize..40, 1..5),
        ext in "(;[a-z]{1,4}(=[ -~&&[^\r\n]]{0,6})?){0,2}",
        upper in any::<bool>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let stream = chunked(&encode(&data, &sizes, &ext, upper));
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        at.sort();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in at.into_iter().chain([stream.len()]) {
            pieces.push(&stream[from..cut]);
            from = cut;
        }
        let (delivered, err) = feed(&pieces, &[Framing::Chunked, Framing::Length(0)]);
        prop_assert_eq!(err, None);
        prop_assert_eq!(delivered, stream);
    }

    /// The chunk size read here is the one Pingora's parser (httparse) reads, for every line
    /// both accept; and a line with a bare LF is never accepted here.
    #[test]
    fn chunk_sizes_agree_with_httparse(line in proptest::collection::vec(
        prop::sample::select(b"0123456789abcdefABCDEFxg; \t=\"\r\n".to_vec()), 1..24)
    ) {
        let mut chunk = Chunk::Digits { count: 0, size: 0 };
        let mut ours = None;
        for (i, &b) in line.iter().enumerate() {
            match chunk_line_byte(chunk, b) {
                Ok(Chunk::Data(size)) => { ours = Some((i + 1, size)); break; }
                Ok(Chunk::TrailerStart) => { ours = Some((i + 1, 0)); break; }
                Ok(next) => chunk = next,
                Err(_) => break,
            }
        }
        if let Some((end, size)) = ours {
            prop_assert!(!line[..end - 1].contains(&b'\n') || line[end - 2] == b'\r');
            prop_assert_eq!(
                httparse::parse_chunk_size(&line),
                Ok(httparse::Status::Complete((end, size)))
            );
        }
    }
}
