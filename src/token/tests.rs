use std::sync::Arc;

use super::*;

const NOW: u32 = 1_800_000_000;

fn key(id: &str, fill: u8) -> SessionKey {
    SessionKey {
        id: id.to_string(),
        secret: vec![fill; 32],
    }
}

/// A session as version 1 read it: the backend by its index among the service's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    backend: usize,
    start: u32,
    last: u32,
    key_index: usize,
}

/// A route codec over backends numbered as version 1's service codec numbered them: a service
/// is a route and a cluster of the same name, so every encoding pinned here is unchanged.
struct ServiceCodec {
    codec: RouteCodec,
    /// Per backend, its tag under each key.
    tags: Vec<Vec<BackendTag>>,
}

impl ServiceCodec {
    fn new(ring: Arc<KeyRing>, service: &str, ids: &[&str], lifetimes: Lifetimes) -> Self {
        let tags = ids
            .iter()
            .map(|id| ring.backend_tags(service, id))
            .collect();
        ServiceCodec {
            codec: RouteCodec::new(ring, service, lifetimes),
            tags,
        }
    }

    fn lifetimes(&self) -> Lifetimes {
        self.codec.lifetimes()
    }

    fn encode(&self, backend: usize, start: u32, last: u32) -> String {
        self.codec.encode(&self.tags[backend][0], start, last)
    }

    fn seal(
        &self,
        key_index: usize,
        nonce: [u8; NONCE_LEN],
        backend: usize,
        start: u32,
        last: u32,
    ) -> [u8; RAW_LEN] {
        let tag = &self.tags[backend][key_index];
        self.codec.seal(key_index, nonce, tag, start, last)
    }

    fn indexed(&self, s: super::Session) -> Result<Session, Reject> {
        let backend = self
            .tags
            .iter()
            .position(|t| t[s.key_index] == s.backend)
            .ok_or(Reject::UnknownBackend)?;
        Ok(Session {
            backend,
            start: s.start,
            last: s.last,
            key_index: s.key_index,
        })
    }

    fn decode(&self, token: &[u8], now: u32) -> Result<Session, Reject> {
        self.indexed(self.codec.decode(token, now)?)
    }

    fn decode_remembered(
        &self,
        token: &[u8],
        now: u32,
        memo: &TokenMemo,
    ) -> Result<Session, Reject> {
        self.indexed(self.codec.decode_remembered(token, now, memo, 0)?)
    }
}

fn codec_with(keys: &[SessionKey], service: &str, lifetimes: Lifetimes) -> ServiceCodec {
    let ring = Arc::new(KeyRing::new(keys).unwrap());
    ServiceCodec::new(
        ring,
        service,
        &["web-1", "web-2", "10.0.0.13:8080"],
        lifetimes,
    )
}

fn codec() -> ServiceCodec {
    codec_with(
        &[key("k1", 1)],
        "web",
        Lifetimes {
            absolute: Some(600),
            idle: Some(60),
        },
    )
}

/// The raw token with a fixed nonce, so encodings can be pinned.
fn fixed(c: &ServiceCodec, backend: usize, start: u32, last: u32) -> String {
    URL_SAFE_NO_PAD.encode(c.seal(0, [7u8; NONCE_LEN], backend, start, last))
}

#[test]
fn round_trip() {
    let c = codec();
    for backend in 0..3 {
        let t = c.encode(backend, NOW - 100, NOW - 10);
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let s = c.decode(t.as_bytes(), NOW).unwrap();
        assert_eq!(
            s,
            Session {
                backend,
                start: NOW - 100,
                last: NOW - 10,
                key_index: 0
            }
        );
    }
}

#[test]
fn tokens_for_one_backend_share_nothing_visible() {
    let c = codec();
    let a = c.encode(0, NOW, NOW);
    let b = c.encode(0, NOW, NOW);
    assert_ne!(a, b);
    // Only the version and key tag (the first 4 characters) may agree.
    let same_tail = a[4..]
        .bytes()
        .zip(b[4..].bytes())
        .filter(|(x, y)| x == y)
        .count();
    assert!(same_tail < 16, "{a} {b}");
}

#[test]
fn each_rejection_reason() {
    let c = codec();
    let good = c.encode(1, NOW - 10, NOW - 5);
    assert_eq!(c.decode(b"", NOW), Err(Reject::Malformed));
    assert_eq!(c.decode(&good.as_bytes()[1..], NOW), Err(Reject::Malformed));
    assert_eq!(c.decode(&[b'!'; TOKEN_LEN], NOW), Err(Reject::Malformed));
    assert_eq!(c.decode(&[0xff; TOKEN_LEN], NOW), Err(Reject::Malformed));

    // Another version, before or after ours (version 1 was AES-256-GCM-SIV).
    for version in [1, VERSION + 1] {
        let mut raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
        raw[0] = version;
        assert_eq!(
            c.decode(URL_SAFE_NO_PAD.encode(&raw).as_bytes(), NOW),
            Err(Reject::Malformed)
        );
    }

    let mut raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
    raw[20] ^= 1;
    assert_eq!(
        c.decode(URL_SAFE_NO_PAD.encode(&raw).as_bytes(), NOW),
        Err(Reject::BadMac)
    );

    let other_key = codec_with(&[key("k9", 9)], "web", c.lifetimes());
    assert_eq!(
        other_key.decode(good.as_bytes(), NOW),
        Err(Reject::UnknownKey)
    );
    // Same key id, different secret: the tag matches, authentication does not.
    let forged = codec_with(&[key("k1", 2)], "web", c.lifetimes());
    assert_eq!(forged.decode(good.as_bytes(), NOW), Err(Reject::BadMac));

    let started = c.encode(0, NOW - 600, NOW - 1);
    assert_eq!(c.decode(started.as_bytes(), NOW), Err(Reject::Expired));
    assert!(c.decode(started.as_bytes(), NOW - 1).is_ok());

    let idle = c.encode(0, NOW - 100, NOW - 60);
    assert_eq!(c.decode(idle.as_bytes(), NOW), Err(Reject::Idle));
    assert!(c.decode(idle.as_bytes(), NOW - 1).is_ok());

    let api = codec_with(&[key("k1", 1)], "api", c.lifetimes());
    assert_eq!(api.decode(good.as_bytes(), NOW), Err(Reject::OtherRoute));

    let ring = Arc::new(KeyRing::new(&[key("k1", 1)]).unwrap());
    let fewer = ServiceCodec::new(ring, "web", &["web-1"], c.lifetimes());
    assert_eq!(
        fewer.decode(good.as_bytes(), NOW),
        Err(Reject::UnknownBackend)
    );
    assert!(fewer.decode(c.encode(0, NOW, NOW).as_bytes(), NOW).is_ok());
}

#[test]
fn times_from_the_future_or_out_of_order_are_malformed() {
    let c = codec();
    let future = c.encode(0, NOW + 3600, NOW + 3600);
    assert_eq!(c.decode(future.as_bytes(), NOW), Err(Reject::Malformed));
    let skewed = c.encode(0, NOW + 30, NOW + 30);
    assert!(
        c.decode(skewed.as_bytes(), NOW).is_ok(),
        "small clock skew is tolerated"
    );
    let backwards = c.encode(0, NOW, NOW - 10);
    assert_eq!(c.decode(backwards.as_bytes(), NOW), Err(Reject::Malformed));
}

#[test]
fn no_lifetimes_means_no_expiry() {
    let c = codec_with(&[key("k1", 1)], "web", Lifetimes::default());
    let old = c.encode(0, 1_000, 1_000);
    assert!(c.decode(old.as_bytes(), NOW).is_ok());
}

#[test]
fn every_single_character_change_is_rejected() {
    let c = codec();
    let good = c.encode(2, NOW - 10, NOW - 5);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut tried = 0;
    for i in 0..good.len() {
        for &ch in alphabet.iter().chain(b"=+/ .") {
            if ch == good.as_bytes()[i] {
                continue;
            }
            let mut t = good.as_bytes().to_vec();
            t[i] = ch;
            assert!(
                c.decode(&t, NOW).is_err(),
                "changed byte {i} to {} accepted",
                ch as char
            );
            tried += 1;
        }
    }
    assert!(tried > 4000);
}

#[test]
fn every_single_bit_flip_of_the_bytes_is_rejected() {
    let c = codec();
    let raw = URL_SAFE_NO_PAD
        .decode(c.encode(0, NOW - 10, NOW - 5))
        .unwrap();
    for i in 0..raw.len() {
        for bit in 0..8 {
            let mut r = raw.clone();
            r[i] ^= 1 << bit;
            let t = URL_SAFE_NO_PAD.encode(&r);
            assert!(c.decode(t.as_bytes(), NOW).is_err(), "byte {i} bit {bit}");
        }
    }
}

#[test]
fn key_rotation_verifies_old_keys_until_retired() {
    let old = codec_with(&[key("k1", 1)], "web", Lifetimes::default());
    let token = old.encode(0, NOW, NOW);
    // k2 added in front: k2 signs, k1 still verifies.
    let rotated = codec_with(&[key("k2", 2), key("k1", 1)], "web", Lifetimes::default());
    let s = rotated.decode(token.as_bytes(), NOW).unwrap();
    assert_eq!((s.backend, s.key_index), (0, 1));
    let new_token = rotated.encode(0, NOW, NOW);
    assert_eq!(
        rotated.decode(new_token.as_bytes(), NOW).unwrap().key_index,
        0
    );
    assert_eq!(
        old.decode(new_token.as_bytes(), NOW),
        Err(Reject::UnknownKey)
    );
    // k1 retired.
    let retired = codec_with(&[key("k2", 2)], "web", Lifetimes::default());
    assert_eq!(
        retired.decode(token.as_bytes(), NOW),
        Err(Reject::UnknownKey)
    );
}

#[test]
fn instances_with_the_same_keys_agree() {
    let a = codec();
    let b = codec();
    let t = a.encode(1, NOW, NOW);
    assert_eq!(b.decode(t.as_bytes(), NOW).unwrap().backend, 1);
}

#[test]
fn colliding_key_ids_are_refused() {
    // Search two ids whose 16-bit tags collide; the ring must refuse them.
    let tag = |id: &str| {
        let d = Sha256::digest(format!("tether key id {id}").as_bytes());
        [d[0], d[1]]
    };
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0..100_000)
        .map(|i| format!("k{i}"))
        .find_map(|id| seen.insert(tag(&id), id.clone()).map(|prev| (prev, id)))
        .unwrap();
    let err = KeyRing::new(&[key(&a, 1), key(&b, 2)]).err().unwrap();
    assert!(err.contains("collide"), "{err}");
}

/// Pinned encodings: a change of format, derivation or cipher changes these, and must be a
/// deliberate decision (old tokens stop working).
#[test]
fn pinned_example_tokens() {
    let c = codec();
    let pinned = [
        (
            0,
            NOW,
            NOW,
            "AhkRBwcHBwcHBwcHBwcHH2yZZOu_9VUJbN2JCjwSbGFNt-oaj4o5bjfXIYwHtU0fTk5V",
        ),
        (
            1,
            NOW - 100,
            NOW - 1,
            "AhkRBwcHBwcHBwcHBwcH-ds66exM5RTpuhk_rMKO9KOdS7u00ohOu1_59avO_KD4X3Hp",
        ),
        (
            2,
            0,
            0,
            "AhkRBwcHBwcHBwcHBwcHRHQd9WlVGd26ftYgEt45B6xWb9VCP0Hjuo5ejZVCPHRn3vGB",
        ),
    ];
    for (backend, start, last, expect) in pinned {
        let t = fixed(&c, backend, start, last);
        assert_eq!(t, expect, "backend {backend}");
        assert_eq!(c.decode(t.as_bytes(), last).unwrap().backend, backend);
    }
}

#[test]
fn no_backend_address_port_or_id_in_any_encoding() {
    let c = codec();
    let secrets = ["web-1", "web-2", "10.0.0.13:8080", "10.0.0.13", "8080"];
    let std_b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    for backend in 0..3 {
        for _ in 0..50 {
            let t = c.encode(backend, NOW, NOW);
            let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            for s in secrets {
                assert!(!t.contains(s), "{s} in {t}");
                assert!(!hex.contains(&s.bytes().map(|b| format!("{b:02x}")).collect::<String>()));
                assert!(!raw.windows(s.len()).any(|w| w == s.as_bytes()));
                // base64 of the id at each of the three alignments.
                for pad in 0..3 {
                    let mut v = vec![0u8; pad];
                    v.extend_from_slice(s.as_bytes());
                    let enc = URL_SAFE_NO_PAD.encode(&v);
                    let core = &enc[(pad * 4).div_ceil(3) + 1..enc.len().saturating_sub(2)];
                    if core.len() >= 4 {
                        assert!(!t.contains(core), "base64 of {s} in {t}");
                        assert!(!std_b64.encode(&raw).contains(core));
                    }
                }
            }
        }
    }
}

#[test]
fn reasons_are_listed_in_index_order() {
    for (i, r) in Reject::ALL.iter().enumerate() {
        assert_eq!(r.index(), i, "{r:?}");
    }
}

/// The format as documented at the top of the module, recomputed from the primitives: an
/// implementation that drifts from its own description fails here.
#[test]
fn construction_is_the_documented_siv() {
    let c = codec();
    let secret = [1u8; 32];
    let t = c.encode(2, NOW - 30, NOW - 3);
    let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
    assert_eq!(raw.len(), 51);
    let (head, rest) = raw.split_at(15);
    let (ciphertext, tag) = rest.split_at(20);

    use aes::cipher::BlockEncrypt;
    let cipher = Aes256::new(&derive(&secret, b"token-enc").into());
    let mut keystream = Vec::new();
    for i in 0..2u32 {
        let mut block = aes::Block::clone_from_slice(tag);
        let counter = u32::from_be_bytes(tag[12..16].try_into().unwrap()).wrapping_add(i);
        block[12..16].copy_from_slice(&counter.to_be_bytes());
        cipher.encrypt_block(&mut block);
        keystream.extend_from_slice(&block);
    }
    let plain: Vec<u8> = ciphertext
        .iter()
        .zip(&keystream)
        .map(|(c, k)| c ^ k)
        .collect();
    let tags_mac = <HmacSha256 as KeyInit>::new_from_slice(&derive(&secret, b"tags")).unwrap();
    let mut expected = Vec::new();
    expected.extend_from_slice(&tag_of::<4>(&tags_mac, &[b"service", b"web"]));
    expected.extend_from_slice(&tag_of::<8>(
        &tags_mac,
        &[b"backend", b"web", b"10.0.0.13:8080"],
    ));
    expected.extend_from_slice(&(NOW - 30).to_be_bytes());
    expected.extend_from_slice(&(NOW - 3).to_be_bytes());
    assert_eq!(plain, expected);

    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&derive(&secret, b"token-mac")).unwrap();
    mac.update(head);
    mac.update(&plain);
    assert_eq!(&mac.finalize().into_bytes()[..16], tag);
    assert_eq!(head[0], 2);
}

#[test]
fn remembered_decoding_agrees_and_still_judges_lifetimes() {
    let c = codec();
    let memo = TokenMemo::default();
    let t = c.encode(1, NOW - 100, NOW - 10);
    let first = c.decode_remembered(t.as_bytes(), NOW, &memo).unwrap();
    assert_eq!(first, c.decode(t.as_bytes(), NOW).unwrap());
    // Again: from the memo, with the same answer.
    assert_eq!(c.decode_remembered(t.as_bytes(), NOW, &memo), Ok(first));
    // Time moves on: idle (last + 60) and absolute (start + 600) still apply to a remembered token.
    assert_eq!(
        c.decode_remembered(t.as_bytes(), NOW + 50, &memo),
        Err(Reject::Idle)
    );
    let fresh = c.encode(1, NOW - 100, NOW);
    c.decode_remembered(fresh.as_bytes(), NOW, &memo).unwrap();
    assert_eq!(
        c.decode_remembered(fresh.as_bytes(), NOW + 500, &memo),
        Err(Reject::Expired)
    );
    // A clock that went back before the token was issued: as decode says.
    assert_eq!(
        c.decode_remembered(fresh.as_bytes(), NOW - 61, &memo),
        Err(Reject::Malformed)
    );
}

#[test]
fn remembered_decoding_verifies_other_bytes() {
    let c = codec();
    let memo = TokenMemo::default();
    let t = c.encode(2, NOW - 100, NOW - 10);
    c.decode_remembered(t.as_bytes(), NOW, &memo).unwrap();
    // One character changed: not the remembered token, so verified, and refused.
    let mut forged = t.clone().into_bytes();
    forged[40] = if forged[40] == b'A' { b'B' } else { b'A' };
    assert!(c.decode_remembered(&forged, NOW, &memo).is_err());
    // The refusal did not replace the memo, and the memo did not make the forgery pass.
    assert!(c.decode_remembered(&forged, NOW, &memo).is_err());
    assert_eq!(
        c.decode_remembered(t.as_bytes(), NOW, &memo)
            .unwrap()
            .backend,
        2
    );
    // Another valid token replaces it.
    let other = c.encode(0, NOW - 5, NOW - 5);
    assert_eq!(
        c.decode_remembered(other.as_bytes(), NOW, &memo)
            .unwrap()
            .backend,
        0
    );
    assert_eq!(
        memo.0.lock().unwrap().as_ref().unwrap().token,
        *<&[u8; TOKEN_LEN]>::try_from(other.as_bytes()).unwrap()
    );
    // Any length works, as with decode.
    assert_eq!(
        c.decode_remembered(b"short", NOW, &memo),
        Err(Reject::Malformed)
    );
}

#[test]
fn a_remembered_token_is_only_for_its_own_route() {
    let ring = Arc::new(KeyRing::new(&[key("k1", 1)]).unwrap());
    let tag = ring.backend_tags("shop", "b1")[0];
    let cart = RouteCodec::new(ring.clone(), "cart", Lifetimes::default());
    let api = RouteCodec::new(ring, "api", Lifetimes::default());
    let memo = TokenMemo::default();
    let t = cart.encode(&tag, NOW, NOW);
    assert_eq!(
        cart.decode_remembered(t.as_bytes(), NOW, &memo, 0)
            .unwrap()
            .backend,
        tag
    );
    // The same bytes on another route (another scope) are decoded afresh: another route's.
    assert_eq!(
        api.decode_remembered(t.as_bytes(), NOW, &memo, 1),
        Err(Reject::OtherRoute)
    );
    // A codec that would wrongly skip the scope check is caught by the route tag anyway; a
    // memo entry made under scope 0 is not reused for scope 1 even by the same codec.
    assert!(cart.decode_remembered(t.as_bytes(), NOW, &memo, 1).is_ok());
}
