//! The `Cookie` header: finding the values of one cookie, removing it and keeping every other
//! byte (RFC 6265 5.4; lenient about spaces and quotes, strict about the name). Any bytes in,
//! never a panic.

/// Splits one `Cookie` header value into `name=value` pairs (RFC 6265 5.4; lenient about
/// spaces and quotes, strict about the name) and yields the values of cookies named `name`.
pub fn cookie_values<'a>(header: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    pairs(header).filter_map(move |pair| {
        let value = value_if_named(pair, name)?;
        Some(
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value),
        )
    })
}

/// The value of one `name=value` pair (spaces around either trimmed), if it is named `name`.
#[inline]
fn value_if_named<'a>(pair: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let pair = pair.trim_ascii();
    let eq = memchr::memchr(b'=', pair)?;
    (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
}

/// The `;`-separated pieces of a `Cookie` header value, untrimmed (as `split` on `;` would
/// give them, found with memchr: a token is most of the bytes and holds no `;`).
fn pairs(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(header);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b';', current) {
            Some(at) => {
                rest = Some(&current[at + 1..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// The `Cookie` header value without the cookies named `name`; every other byte kept. The
/// result is allocated at its exact size, so it becomes a header value without another copy.
pub fn without_cookie(header: &[u8], name: &[u8]) -> Vec<u8> {
    without_ours(header, name).unwrap_or_else(|| header.to_vec())
}

/// As [`without_cookie`], but `None` when there is no cookie named `name` (nothing to rewrite).
pub(super) fn without_ours(header: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let mut len = 0;
    if !kept_pieces(header, name, |piece| len += piece.len()) {
        return None;
    }
    if len == 0 {
        return Some(Vec::new());
    }
    let mut out = Vec::with_capacity(len);
    kept_pieces(header, name, |piece| out.extend_from_slice(piece));
    Some(out)
}

/// Calls `emit` with the pieces of `header` that remain once the cookies named `name` are gone;
/// returns whether there was one to remove.
fn kept_pieces(header: &[u8], name: &[u8], mut emit: impl FnMut(&[u8])) -> bool {
    let mut first = true;
    let mut removed = false;
    for pair in pairs(header) {
        if value_if_named(pair, name).is_some() {
            removed = true;
            continue;
        }
        let piece = if first {
            // The first kept pair loses the space that separated it from a removed one.
            pair.trim_ascii_start()
        } else {
            emit(b";");
            pair
        };
        // An empty first piece is not a pair: the next one is still first.
        first = first && piece.is_empty();
        emit(piece);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(header: &'a str, name: &'a str) -> Vec<&'a str> {
        cookie_values(header.as_bytes(), name.as_bytes())
            .map(|v| std::str::from_utf8(v).unwrap())
            .collect()
    }

    #[test]
    fn cookie_values_find_every_cookie_of_the_name() {
        assert_eq!(values("a=1; s=x; b=2; s=y", "s"), vec!["x", "y"]);
        assert_eq!(values("s=\"quoted\"", "s"), vec!["quoted"]);
        assert_eq!(values(" s = spaced ;", "s"), vec!["spaced"]);
        assert_eq!(values("ss=1; s_=2; S=3", "s"), Vec::<&str>::new());
        assert_eq!(values("s", "s"), Vec::<&str>::new());
        assert_eq!(values("s=", "s"), vec![""]);
        assert_eq!(values(";;;=;s=a=b", "s"), vec!["a=b"]);
    }

    #[test]
    fn cookie_values_take_any_bytes() {
        let header = b"a=\xff\xfe; s=\x00\x01; \xc3(=1";
        let found: Vec<&[u8]> = cookie_values(header, b"s").collect();
        assert_eq!(found, vec![&b"\x00\x01"[..]]);
    }

    #[test]
    fn pairs_split_like_split() {
        for header in ["", ";", "a=1", "a=1;", ";;a", "a=1; b=2;c", " ; ;"] {
            let ours: Vec<&[u8]> = pairs(header.as_bytes()).collect();
            let std: Vec<&[u8]> = header.as_bytes().split(|&b| b == b';').collect();
            assert_eq!(ours, std, "{header:?}");
        }
    }

    #[test]
    fn without_cookie_keeps_every_other_byte() {
        let strip = |h: &str| String::from_utf8(without_cookie(h.as_bytes(), b"s")).unwrap();
        assert_eq!(strip("a=1; s=x; b=2"), "a=1; b=2");
        assert_eq!(strip("s=x; a=1;b=2"), "a=1;b=2");
        assert_eq!(strip("a=1;  b=2 ; s=x"), "a=1;  b=2 ");
        assert_eq!(strip("s=x"), "");
        assert_eq!(strip("s=x; s=y"), "");
        assert_eq!(strip("a=1; sx=2"), "a=1; sx=2");
        assert_eq!(strip("weird;;a=\"q\""), "weird;;a=\"q\"");
        assert_eq!(strip("  ; s=x; a=1"), "a=1");
        let kept = without_cookie(b"a=1; s=x; b=2", b"s");
        assert_eq!(
            kept.capacity(),
            kept.len(),
            "exact size: no copy into the header value"
        );
    }
}
