//! Property tests of everything a client or an operator controls: the token decoder, the cookie
//! parser, the request framing of a client connection, the config loader. None may panic; each
//! must reject what it should.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use tether::config::{Config, SessionKey};
use tether::session::{cookie_values, without_cookie};
use tether::token::{BackendTag, KeyRing, Lifetimes, RouteCodec, TOKEN_LEN};

#[path = "../fuzz/fuzz_targets/framing_check.rs"]
mod framing_check;

const NOW: u32 = 1_800_000_000;

/// Bytes that look like HTTP/1 requests often enough to reach their bodies: request lines,
/// framing headers and chunk lines, with stray CR, LF and control characters between them.
fn request_like_stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"GET / HTTP/1.1".to_vec()),
        Just(b"POST /p HTTP/1.1".to_vec()),
        Just(b"Transfer-Encoding: chunked".to_vec()),
        Just(b"Content-Length: 3".to_vec()),
        Just(b"Host: a".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"5;e".to_vec()),
        Just(b"0".to_vec()),
        Just(b"hello".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..4),
    ];
    (any::<u8>(), proptest::collection::vec(piece, 0..40)).prop_map(|(seed, pieces)| {
        let mut data = vec![seed];
        data.extend(pieces.concat());
        data
    })
}

/// The codec of route `web` and the signing key's tags of its four backends.
fn codec() -> (RouteCodec, Vec<BackendTag>) {
    let ring = Arc::new(
        KeyRing::new(&[SessionKey {
            id: "k1".into(),
            secret: vec![42; 32],
        }])
        .unwrap(),
    );
    let tags = ["a", "b", "c", "d"]
        .iter()
        .map(|id| ring.backend_tags("web", id)[0])
        .collect();
    let lifetimes = Lifetimes {
        absolute: Some(3600),
        idle: Some(600),
    };
    (RouteCodec::new(ring, "web", lifetimes), tags)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = codec().0.decode(&bytes, NOW);
    }

    #[test]
    fn decoding_token_shaped_strings_never_panics_and_never_accepts(s in "[A-Za-z0-9_-]{68}") {
        // A random string of the right shape is not a token of ours (2^-128 chance).
        prop_assert!(codec().0.decode(s.as_bytes(), NOW).is_err());
    }

    #[test]
    fn round_trip(backend in 0usize..4, age in 0u32..3600, idle in 0u32..600) {
        let (c, tags) = codec();
        let start = NOW - age;
        let last = (NOW - idle).max(start);
        let t = c.encode(&tags[backend], start, last);
        prop_assert_eq!(t.len(), TOKEN_LEN);
        let s = c.decode(t.as_bytes(), NOW).unwrap();
        prop_assert_eq!((s.backend, s.start, s.last), (tags[backend], start, last));
    }

    #[test]
    fn any_mutation_of_a_valid_token_is_rejected(
        backend in 0usize..4,
        edits in proptest::collection::vec((0usize..TOKEN_LEN, any::<u8>()), 1..4),
    ) {
        let (c, tags) = codec();
        let token = c.encode(&tags[backend], NOW - 10, NOW - 5);
        let mut bytes = token.clone().into_bytes();
        for (i, b) in edits {
            bytes[i] = b;
        }
        prop_assume!(bytes != token.as_bytes());
        prop_assert!(c.decode(&bytes, NOW).is_err());
    }

    #[test]
    fn cookie_functions_take_any_bytes(header in proptest::collection::vec(any::<u8>(), 0..300), name in "[a-z_]{1,8}") {
        let found: Vec<&[u8]> = cookie_values(&header, name.as_bytes()).collect();
        let stripped = without_cookie(&header, name.as_bytes());
        // Whatever was found is gone after stripping, and stripping twice changes nothing.
        prop_assert_eq!(cookie_values(&stripped, name.as_bytes()).count(), 0);
        prop_assert_eq!(without_cookie(&stripped, name.as_bytes()), stripped.clone());
        prop_assert!(stripped.len() <= header.len());
        let _ = found;
    }

    #[test]
    fn stripping_keeps_every_other_cookie_in_order(
        pairs in proptest::collection::vec(("[a-z]{1,6}", "[A-Za-z0-9%=]{0,10}"), 0..20),
    ) {
        let header = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let stripped = String::from_utf8(without_cookie(header.as_bytes(), b"sid")).unwrap();
        let kept = pairs.iter().filter(|(k, _)| k != "sid").map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        prop_assert_eq!(stripped, kept);
    }

    #[test]
    fn request_framing_agrees_with_httparse(data in request_like_stream()) {
        framing_check::check(&data);
    }

    #[test]
    fn config_loader_never_panics_on_text(text in "\\PC{0,400}") {
        let _ = Config::parse(&text, Path::new("."), &|_| None);
    }

    #[test]
    fn config_loader_never_panics_on_yaml_trees(value in yaml_value()) {
        let text = serde_yaml::to_string(&value).unwrap_or_default();
        if let Err(e) = Config::parse(&text, Path::new("."), &|_| None) {
            prop_assert!(!e.message.is_empty());
        }
    }
}

/// Random YAML trees whose keys come from tether's vocabulary, so that the decoder goes deep.
fn yaml_value() -> impl Strategy<Value = serde_yaml::Value> {
    let keys = prop::sample::select(vec![
        "services",
        "name",
        "listen",
        "backends",
        "address",
        "id",
        "weight",
        "state",
        "health_check",
        "type",
        "interval",
        "timeouts",
        "read",
        "session_persistence",
        "cookie",
        "same_site",
        "secure",
        "absolute_timeout",
        "admin",
        "session_keys",
        "secret_env",
        "threads",
        "version",
    ]);
    let leaf = prop_oneof![
        Just(serde_yaml::Value::Null),
        any::<bool>().prop_map(serde_yaml::Value::from),
        any::<i64>().prop_map(serde_yaml::Value::from),
        "[a-zA-Z0-9:._/ -]{0,20}".prop_map(serde_yaml::Value::from),
        Just(serde_yaml::Value::from("127.0.0.1:8000")),
        Just(serde_yaml::Value::from("10s")),
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_yaml::Value::Sequence),
            proptest::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| {
                serde_yaml::Value::Mapping(
                    kv.into_iter()
                        .map(|(k, v)| (serde_yaml::Value::from(k), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// Every fuzzing seed and every crash the fuzzers ever found (fuzz/corpus, fuzz/artifacts),
/// replayed with the fuzz targets' assertions.
#[test]
fn fuzz_corpus_and_artifacts_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let inputs = |target: &str| -> Vec<Vec<u8>> {
        ["corpus", "artifacts"]
            .iter()
            .filter_map(|kind| std::fs::read_dir(root.join(kind).join(target)).ok())
            .flatten()
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .collect()
    };
    let token_inputs = inputs("token_decode");
    assert!(
        !token_inputs.is_empty(),
        "no seeds in fuzz/corpus/token_decode"
    );
    let (c, _) = codec();
    for data in token_inputs {
        assert!(c.decode(&data, NOW).is_err());
    }
    for data in inputs("cookie_parse") {
        let Some((&n, header)) = data.split_first() else {
            continue;
        };
        let name = &b"sid_x"[..(n as usize % 5) + 1];
        let stripped = without_cookie(header, name);
        assert_eq!(cookie_values(&stripped, name).count(), 0);
        assert_eq!(without_cookie(&stripped, name), stripped);
    }
    let framing_inputs = inputs("request_framing");
    assert!(
        !framing_inputs.is_empty(),
        "no seeds in fuzz/corpus/request_framing"
    );
    for data in framing_inputs {
        framing_check::check(&data);
    }
}
