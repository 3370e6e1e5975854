//! The session token: what the cookie or header carries. Pure code, no I/O.
//!
//! ```text
//! bytes  0      1..3      3..15    15..35                                   35..51
//!        ver=2  key tag   nonce    AES-256-CTR( route tag 4 | backend tag 8     SIV tag 16
//!                                   | session start u32 | last use u32 )
//! ```
//!
//! The construction is SIV (Rogaway and Shrimpton's synthetic IV, which RFC 5297 instantiates
//! with CMAC; here HMAC-SHA256 is the PRF): `tag = HMAC-SHA256(mac key, header | nonce |
//! payload)[..16]`, and the payload is encrypted with AES-256-CTR whose initial counter block is
//! the tag (32-bit big-endian counter in its last four bytes). Primitives and mode are
//! RustCrypto's (`hmac`, `sha2`, `aes`, `ctr`). Both keys are fixed per ring key, so nothing is
//! derived per token: decode+verify is one HMAC over one SHA-256 block and two AES blocks
//! (AES-GCM-SIV, used before, derives two keys per message and cost three times as much).
//!
//! 51 bytes, base64url without padding: 68 characters of `[A-Za-z0-9_-]`. 51 is a multiple of
//! 3, so the encoding has no spare bits: every character change changes the bytes.
//!
//! - Nothing is readable: the payload is encrypted, and its backend tag is itself a keyed hash
//!   of the cluster and backend id, so no address, port or id appears in any encoding.
//! - The route tag (a keyed hash of the route's name) scopes a token to its route. A route made
//!   by a `services` entry has the service's name, and so does its cluster: the tags are the
//!   ones version 1 computed for the service, and its tokens stay valid.
//!   With a fresh nonce per token, two tokens for one backend share no bytes either.
//! - Nothing is forgeable: the tag authenticates header, nonce and payload. SIV is nonce-misuse
//!   resistant: a repeated nonce only shows that two tokens carry the same payload.
//! - Times are wall-clock seconds, so every instance with the same keys reads a token alike.
//! - The key tag names the key: tokens of every key in the ring verify, the first key signs.

use aes::cipher::{InnerIvInit, KeyInit as _, StreamCipher, StreamCipherCoreWrapper};
use aes::Aes256;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ctr::flavors::Ctr32BE;
use ctr::CtrCore;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::config::SessionKey;

/// Token format version.
pub const VERSION: u8 = 2;
/// Length of an encoded token, in characters.
pub const TOKEN_LEN: usize = 68;
const RAW_LEN: usize = 51;
const HEADER_LEN: usize = 3;
const NONCE_LEN: usize = 12;
const PAYLOAD_LEN: usize = 20;
const PAYLOAD_AT: usize = HEADER_LEN + NONCE_LEN;
const TAG_AT: usize = PAYLOAD_AT + PAYLOAD_LEN;
const TAG_LEN: usize = RAW_LEN - TAG_AT;
// The SIV tag is the CTR mode's 16-byte initial counter block.
const _: () = assert!(TAG_LEN == 16);
/// How far in the future a token's times may be (clock differences between instances).
pub const MAX_CLOCK_SKEW_SECS: u32 = 60;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was not honoured; each is a `reason` label of `tether_session_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not a token of this format (length, alphabet, version, impossible times).
    Malformed,
    /// Authentication failed: altered, or made without our key.
    BadMac,
    /// Its key is not in the ring (retired, or never ours).
    UnknownKey,
    /// Older than `absolute_timeout`.
    Expired,
    /// Unused for longer than `idle_timeout`.
    Idle,
    /// Issued for another route.
    OtherRoute,
    /// Names a backend the route's clusters no longer have (told by the route, which knows its
    /// backends; the codec does not).
    UnknownBackend,
}

impl Reject {
    /// Every reason, in the order of [`Reject::index`].
    pub const ALL: [Reject; 7] = [
        Reject::Malformed,
        Reject::BadMac,
        Reject::UnknownKey,
        Reject::Expired,
        Reject::Idle,
        Reject::OtherRoute,
        Reject::UnknownBackend,
    ];

    /// The `reason` label of `tether_session_rejected_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::BadMac => "bad_mac",
            Reject::UnknownKey => "unknown_key",
            Reject::Expired => "expired",
            Reject::Idle => "idle",
            Reject::OtherRoute => "other_route",
            Reject::UnknownBackend => "unknown_backend",
        }
    }

    /// Position in [`Reject::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A ring key with what is derived from its secret.
struct RingKey {
    id: String,
    tag: [u8; 2],
    /// Encrypts the payload (CTR mode, started at the SIV tag).
    cipher: Aes256,
    /// Makes the SIV tag over header, nonce and payload.
    token_mac: HmacSha256,
    /// Keys the route and backend tags, which must not be computable without the secret.
    tag_mac: HmacSha256,
}

/// The session keys: the first signs new tokens, every one verifies.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

/// Derives a sub-key from a secret for one purpose (HMAC-SHA256 as a PRF, as HKDF-Expand does).
fn derive(secret: &[u8], purpose: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key size");
    mac.update(b"tether/v1/");
    mac.update(purpose);
    mac.finalize().into_bytes().into()
}

impl KeyRing {
    /// A ring of the configured keys (at least one), signing with the first.
    pub fn new(keys: &[SessionKey]) -> Result<KeyRing, String> {
        if keys.is_empty() {
            return Err("a key ring needs at least one key".to_string());
        }
        let mut ring = Vec::with_capacity(keys.len());
        for key in keys {
            let digest = Sha256::digest(format!("tether key id {}", key.id).as_bytes());
            let tag = [digest[0], digest[1]];
            if let Some(other) = ring.iter().find(|k: &&RingKey| k.tag == tag) {
                return Err(format!(
                    "key ids `{}` and `{}` collide in tokens; rename one",
                    other.id, key.id
                ));
            }
            let cipher = Aes256::new(&derive(&key.secret, b"token-enc").into());
            let token_mac =
                <HmacSha256 as KeyInit>::new_from_slice(&derive(&key.secret, b"token-mac"))
                    .expect("HMAC takes any key size");
            let tag_mac = <HmacSha256 as KeyInit>::new_from_slice(&derive(&key.secret, b"tags"))
                .expect("HMAC takes any key size");
            ring.push(RingKey {
                id: key.id.clone(),
                tag,
                cipher,
                token_mac,
                tag_mac,
            });
        }
        Ok(KeyRing { keys: ring })
    }

    /// A ring of one random key, for a process without `session_keys`.
    pub fn random() -> Result<KeyRing, String> {
        let mut secret = vec![0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| format!("no randomness for a key: {e}"))?;
        Self::new(&[SessionKey {
            id: "random".to_string(),
            secret,
        }])
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring has no key (never: [`KeyRing::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The tags of backend `id` of `cluster` under each key, in ring order.
    pub fn backend_tags(&self, cluster: &str, id: &str) -> Vec<BackendTag> {
        // "backend" and the cluster name: what version 1 keyed with the service's name.
        self.keys
            .iter()
            .map(|k| tag_of(&k.tag_mac, &[b"backend", cluster.as_bytes(), id.as_bytes()]))
            .collect()
    }

    /// A random nonce from the thread's CSPRNG: unlinkable tokens (a counter would show which
    /// instance issued a token and how many it had issued). A repeat is harmless with SIV.
    fn next_nonce(&self) -> [u8; NONCE_LEN] {
        rand::random()
    }
}

fn tag_of<const N: usize>(mac: &HmacSha256, parts: &[&[u8]]) -> [u8; N] {
    let mut mac = mac.clone();
    for p in parts {
        // Length-prefixed, so ("ab","c") and ("a","bc") differ.
        mac.update(&(p.len() as u32).to_be_bytes());
        mac.update(p);
    }
    let out = mac.finalize().into_bytes();
    out[..N].try_into().expect("N <= 32")
}

/// The SIV tag: HMAC-SHA256 over header and nonce (`head`) and the plaintext payload, truncated.
fn siv_tag(key: &RingKey, head: &[u8], payload: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = key.token_mac.clone();
    mac.update(head);
    mac.update(payload);
    let out = mac.finalize().into_bytes();
    out[..TAG_LEN].try_into().expect("TAG_LEN <= 32")
}

/// XORs `data` with the AES-256-CTR keystream whose first counter block is `iv` (RustCrypto's
/// `ctr`, 32-bit big-endian counter in the block's last four bytes). Its own inverse.
fn apply_ctr(cipher: &Aes256, iv: &[u8; TAG_LEN], data: &mut [u8]) {
    let core = CtrCore::<Aes256, Ctr32BE>::inner_iv_init(cipher.clone(), iv.into());
    StreamCipherCoreWrapper::from_core(core).apply_keystream(data);
}

/// Lifetimes a token is checked against, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifetimes {
    /// Session ends this long after it began.
    pub absolute: Option<u32>,
    /// Session ends after this long without a request.
    pub idle: Option<u32>,
}

/// A backend's tag in tokens: a keyed hash of its cluster and id.
pub type BackendTag = [u8; 8];

/// A valid token's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The backend's tag under the key that made the token.
    pub backend: BackendTag,
    /// When the session began (Unix seconds).
    pub start: u32,
    /// When the token was last issued (Unix seconds).
    pub last: u32,
    /// Index of the key that made it (0: the signing key).
    pub key_index: usize,
}

/// Encodes and decodes the tokens of one route, with its tag precomputed for every key.
pub struct RouteCodec {
    ring: std::sync::Arc<KeyRing>,
    /// Per key: the route tag.
    route_tags: Vec<[u8; 4]>,
    lifetimes: Lifetimes,
}

impl RouteCodec {
    /// The codec of route `route`.
    pub fn new(ring: std::sync::Arc<KeyRing>, route: &str, lifetimes: Lifetimes) -> Self {
        // "service": the label version 1 keyed its scope with.
        let route_tags = ring
            .keys
            .iter()
            .map(|k| tag_of(&k.tag_mac, &[b"service", route.as_bytes()]))
            .collect();
        RouteCodec {
            ring,
            route_tags,
            lifetimes,
        }
    }

    /// The lifetimes tokens are checked against.
    pub fn lifetimes(&self) -> Lifetimes {
        self.lifetimes
    }

    /// A new token for the backend with this tag under the signing key.
    pub fn encode(&self, backend: &BackendTag, start: u32, last: u32) -> String {
        let mut out = String::with_capacity(TOKEN_LEN);
        self.encode_into(backend, start, last, &mut out);
        out
    }

    /// Appends a new token to `out` (no allocation when `out` has room).
    pub fn encode_into(&self, backend: &BackendTag, start: u32, last: u32, out: &mut String) {
        let raw = self.seal(0, self.ring.next_nonce(), backend, start, last);
        URL_SAFE_NO_PAD.encode_string(raw, out);
    }

    fn seal(
        &self,
        key_index: usize,
        nonce: [u8; NONCE_LEN],
        backend: &BackendTag,
        start: u32,
        last: u32,
    ) -> [u8; RAW_LEN] {
        let key = &self.ring.keys[key_index];
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1..3].copy_from_slice(&key.tag);
        raw[HEADER_LEN..PAYLOAD_AT].copy_from_slice(&nonce);
        let payload = &mut raw[PAYLOAD_AT..TAG_AT];
        payload[0..4].copy_from_slice(&self.route_tags[key_index]);
        payload[4..12].copy_from_slice(backend);
        payload[12..16].copy_from_slice(&start.to_be_bytes());
        payload[16..20].copy_from_slice(&last.to_be_bytes());
        let tag = siv_tag(key, &raw[..PAYLOAD_AT], &raw[PAYLOAD_AT..TAG_AT]);
        apply_ctr(&key.cipher, &tag, &mut raw[PAYLOAD_AT..TAG_AT]);
        raw[TAG_AT..].copy_from_slice(&tag);
        raw
    }

    /// Checks a presented token at time `now` (Unix seconds). Checks run cheapest first, and
    /// a token is only read after it authenticated.
    pub fn decode(&self, token: &[u8], now: u32) -> Result<Session, Reject> {
        if token.len() != TOKEN_LEN {
            return Err(Reject::Malformed);
        }
        let mut raw = [0u8; RAW_LEN];
        match URL_SAFE_NO_PAD.decode_slice(token, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return Err(Reject::Malformed),
        }
        if raw[0] != VERSION {
            return Err(Reject::Malformed);
        }
        let key_index = self
            .ring
            .keys
            .iter()
            .position(|k| k.tag == raw[1..3])
            .ok_or(Reject::UnknownKey)?;
        let key = &self.ring.keys[key_index];
        let (head, rest) = raw.split_at_mut(PAYLOAD_AT);
        let (payload, tag) = rest.split_at_mut(PAYLOAD_LEN);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().expect("TAG_LEN bytes");
        apply_ctr(&key.cipher, &tag, payload);
        // Constant-time comparison; the payload is read only once it matched.
        let mut mac = key.token_mac.clone();
        mac.update(head);
        mac.update(payload);
        mac.verify_truncated_left(&tag)
            .map_err(|_| Reject::BadMac)?;
        if payload[0..4] != self.route_tags[key_index] {
            return Err(Reject::OtherRoute);
        }
        let start = u32::from_be_bytes(payload[12..16].try_into().unwrap_or_default());
        let last = u32::from_be_bytes(payload[16..20].try_into().unwrap_or_default());
        self.check_times(start, last, now)?;
        let backend: BackendTag = payload[4..12].try_into().unwrap_or_default();
        Ok(Session {
            backend,
            start,
            last,
            key_index,
        })
    }

    /// As [`RouteCodec::decode`], remembering the last valid token in `memo`: the same bytes
    /// again (a kept-alive connection's next request) skip the cryptography, not the lifetimes.
    /// `scope` identifies this codec's route: a token remembered for another route is decoded
    /// afresh (and so refused as `other_route`), whichever routes share the connection.
    pub fn decode_remembered(
        &self,
        token: &[u8],
        now: u32,
        memo: &TokenMemo,
        scope: usize,
    ) -> Result<Session, Reject> {
        let Ok(token) = <&[u8; TOKEN_LEN]>::try_from(token) else {
            return self.decode(token, now);
        };
        // A poisoned lock only means a panic elsewhere mid-update of two plain values.
        let mut last = memo.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(memo) = &*last {
            if memo.scope == scope && same_token(&memo.token, token) {
                self.check_times(memo.session.start, memo.session.last, now)?;
                return Ok(memo.session);
            }
        }
        let session = self.decode(token, now)?;
        *last = Some(Remembered {
            scope,
            token: *token,
            session,
        });
        Ok(session)
    }

    /// The time checks of a token whose session began at `start` and which was issued at `last`.
    fn check_times(&self, start: u32, last: u32, now: u32) -> Result<(), Reject> {
        if last < start || last > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(Reject::Malformed);
        }
        if let Some(max) = self.lifetimes.absolute {
            if now >= start.saturating_add(max) {
                return Err(Reject::Expired);
            }
        }
        if let Some(max) = self.lifetimes.idle {
            if now >= last.saturating_add(max) {
                return Err(Reject::Idle);
            }
        }
        Ok(())
    }
}

/// Whether two tokens are equal, in time that does not depend on where they differ: one
/// connection may carry many clients' requests (behind a front proxy), and the memo holds
/// another client's token.
fn same_token(a: &[u8; TOKEN_LEN], b: &[u8; TOKEN_LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The last valid token seen on one client connection, with the route it was valid for and
/// what it decoded to.
#[derive(Debug, Default)]
pub struct TokenMemo(std::sync::Mutex<Option<Remembered>>);

#[derive(Debug)]
struct Remembered {
    scope: usize,
    token: [u8; TOKEN_LEN],
    session: Session,
}

#[cfg(test)]
mod tests;
