//! The admin write API (SPEC 8.2): `POST /clusters/{cluster}/backends/{id}` with
//! `{"state": ...}` and/or `{"weight": N}` sets a runtime override (`{"state": "config"}` drops
//! it), authorised by `Authorization: Bearer <token>` compared in constant time; the change is
//! published at once and written to the state file.

use http::{Method, Response, StatusCode};
use pingora_core::protocols::http::ServerSession;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{backend_json, not_allowed, respond, Admin};
use crate::config::{BackendState, MAX_WEIGHT};

/// The largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// A change asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Set the state and/or weight.
    Set(Option<BackendState>, Option<usize>),
    /// Drop the override: the source's values hold again.
    Config,
}

/// Whether `presented` is the token, in time independent of where they differ: both are hashed
/// first (equal lengths), then compared in constant time.
pub fn token_matches(expected: &[u8], presented: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(expected), Sha256::digest(presented));
    a.ct_eq(&b).into()
}

fn error(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec(&json!({ "error": message })).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

impl Admin {
    /// Serves `/clusters/...`.
    pub(super) async fn write(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != Method::POST {
            return not_allowed("POST");
        }
        let Some((cluster_name, id)) = target(req.uri.path()) else {
            return error(
                StatusCode::NOT_FOUND,
                "not found: use /clusters/{cluster}/backends/{id}",
            );
        };
        let Some(token) = &self.token else {
            return error(
                StatusCode::FORBIDDEN,
                "the write API is off: set admin.token_file or admin.token_env",
            );
        };
        let presented = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !presented.is_some_and(|p| token_matches(&token.0, p)) {
            let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
        let Some(cluster) = self
            .gateway
            .clusters
            .iter()
            .find(|c| c.config.name == cluster_name)
        else {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no cluster `{cluster_name}`"),
            );
        };
        if !cluster.backends().backends.iter().any(|b| b.id == id) {
            return error(
                StatusCode::NOT_FOUND,
                &format!("cluster `{cluster_name}` has no backend `{id}`"),
            );
        }
        let body = match read_body(session).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let change = match parse_change(&body) {
            Ok(change) => change,
            Err(problem) => return error(StatusCode::BAD_REQUEST, &problem),
        };
        let applied = match change {
            Change::Config => cluster.set_override(&id, None),
            Change::Set(state, weight) => cluster.set_override(&id, Some((state, weight))),
        };
        let Some(backend) = applied else {
            // Discovery dropped it in between.
            return error(
                StatusCode::NOT_FOUND,
                &format!("cluster `{cluster_name}` has no backend `{id}`"),
            );
        };
        log::info!(
            "admin API: cluster {cluster_name} backend {id}: state {}, weight {} ({})",
            backend.state.as_str(),
            backend.weight,
            backend.source.as_str()
        );
        if let Some(file) = &self.gateway.state_file {
            if let Err(e) = file.write(&self.gateway.clusters) {
                log::error!("cannot write `{}`: {e}", file.path().display());
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("the change is in effect but not saved to the state file: {e}"),
                );
            }
        }
        let mut body = serde_json::to_vec_pretty(&backend_json(&backend)).unwrap_or_default();
        body.push(b'\n');
        respond(StatusCode::OK, "application/json", body)
    }
}

/// `(cluster, backend id)` of `/clusters/{cluster}/backends/{id}`, percent-decoded.
fn target(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/clusters/")?;
    let (cluster, id) = rest.split_once("/backends/")?;
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    let (cluster, id) = (decode(cluster)?, decode(id)?);
    (!cluster.is_empty() && !id.is_empty() && !cluster.contains('/')).then_some((cluster, id))
}

/// The request body, at most [`MAX_BODY`] bytes (`413` beyond).
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("the body may hold at most {MAX_BODY} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the body: {e}"),
                ))
            }
        }
    }
}

/// What a body asks for, or the problem with it.
pub fn parse_change(body: &[u8]) -> Result<Change, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("the body must be a JSON object with `state` and/or `weight`".into());
    };
    if let Some(key) = fields.keys().find(|k| *k != "state" && *k != "weight") {
        return Err(format!(
            "unknown key `{key}`: expected `state` and/or `weight`"
        ));
    }
    let state = match fields.get("state") {
        None => None,
        Some(Value::String(word)) if word == "config" => {
            if fields.contains_key("weight") {
                return Err(
                    "`\"state\": \"config\"` drops the runtime weight too: send it alone".into(),
                );
            }
            return Ok(Change::Config);
        }
        Some(Value::String(word)) => Some(BackendState::from_word(word).ok_or_else(|| {
            format!("unknown state `{word}`: expected active, draining, disabled or config")
        })?),
        Some(other) => return Err(format!("`state` must be a string, found {other}")),
    };
    let weight = match fields.get("weight") {
        None => None,
        Some(w) => match w.as_u64() {
            Some(n @ 1..) if n <= MAX_WEIGHT => Some(n as usize),
            _ => {
                return Err(format!(
                    "`weight` must be a whole number from 1 to {MAX_WEIGHT}, found {w}"
                ))
            }
        },
    };
    if state.is_none() && weight.is_none() {
        return Err("give `state` and/or `weight`".into());
    }
    Ok(Change::Set(state, weight))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_what_they_ask_for() {
        let parse = |s: &str| parse_change(s.as_bytes());
        assert_eq!(
            parse(r#"{"state": "draining"}"#),
            Ok(Change::Set(Some(BackendState::Draining), None))
        );
        assert_eq!(
            parse(r#"{"weight": 5, "state": "ACTIVE"}"#),
            Ok(Change::Set(Some(BackendState::Active), Some(5)))
        );
        assert_eq!(parse(r#"{"state": "config"}"#), Ok(Change::Config));
        for (body, problem) in [
            ("{}", "give `state`"),
            ("", "not JSON"),
            ("[1]", "JSON object"),
            (r#"{"state": "sleepy"}"#, "unknown state `sleepy`"),
            (r#"{"state": 3}"#, "must be a string"),
            (r#"{"weight": 0}"#, "from 1 to"),
            (r#"{"weight": 1.5}"#, "from 1 to"),
            (r#"{"weight": 10001}"#, "from 1 to"),
            (r#"{"weight": "2"}"#, "from 1 to"),
            (r#"{"state": "config", "weight": 2}"#, "send it alone"),
            (r#"{"sate": "active"}"#, "unknown key `sate`"),
        ] {
            let got = parse(body).unwrap_err();
            assert!(got.contains(problem), "{body}: {got}");
        }
    }

    #[test]
    fn targets_are_decoded() {
        assert_eq!(
            target("/clusters/app/backends/127.0.0.1%3A8080"),
            Some(("app".into(), "127.0.0.1:8080".into()))
        );
        assert_eq!(
            target("/clusters/app/backends/127.0.0.1:8080"),
            Some(("app".into(), "127.0.0.1:8080".into()))
        );
        assert_eq!(target("/clusters/app/backends/"), None);
        assert_eq!(target("/clusters/app"), None);
        assert_eq!(target("/clusters/a/b/backends/x"), None);
        assert_eq!(target("/clusters/app/backends/%FF"), None);
    }

    #[test]
    fn the_token_check_hashes_then_compares_in_constant_time() {
        let token = b"0123456789abcdef-admin";
        assert!(token_matches(token, token));
        assert!(!token_matches(token, b"0123456789abcdef-admiN"));
        assert!(!token_matches(token, b"0123456789abcdef-admin "));
        assert!(!token_matches(token, b""));
        assert!(!token_matches(token, b"x"));
    }
}
