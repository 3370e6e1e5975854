//! What a request's session token means for it: honoured, a new session, or a strict 503. A
//! pure function of what the route found out about the token's backend; the proxy only asks.

/// What happened to a request's session, for metrics and the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No session persistence, or the request never reached selection.
    None,
    /// A new session was pinned.
    Created,
    /// A valid token was honoured.
    Routed,
    /// The token's backend was unavailable; re-pinned.
    FailedOpen,
    /// The token's backend was unavailable; strict 503.
    FailedClosed,
}

impl Outcome {
    /// The access-log word.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::None => "none",
            Outcome::Created => "created",
            Outcome::Routed => "routed",
            Outcome::FailedOpen => "failed_open",
            Outcome::FailedClosed => "failed_closed",
        }
    }
}

/// The backend a valid (authentic, unexpired, this route's) token names, as the route found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenBackend<B> {
    /// In the route's clusters, healthy, not disabled, not refusing this request: it serves the
    /// session whatever the weights and whether `active` or `draining`.
    Serves(B),
    /// Gone from the route's clusters, unhealthy, disabled, or it refused this request.
    Unavailable,
}

/// Where the request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<B> {
    /// To the token's backend (`routed`).
    Routed(B),
    /// To a backend picked by the route's weights, with a new token: `created` or
    /// `failed_open`.
    New(Outcome),
    /// Nowhere: 503, the token kept (`failed_closed`).
    FailedClosed,
}

/// The decision for a request that presented `token` (`None`: no valid token of this route),
/// on a route whose policy is `strict` or not.
pub fn decide<B>(token: Option<TokenBackend<B>>, strict: bool) -> Decision<B> {
    match token {
        None => Decision::New(Outcome::Created),
        Some(TokenBackend::Serves(backend)) => Decision::Routed(backend),
        Some(TokenBackend::Unavailable) if strict => Decision::FailedClosed,
        Some(TokenBackend::Unavailable) => Decision::New(Outcome::FailedOpen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_of_the_session_rules() {
        use TokenBackend::*;
        type Case = (
            Option<TokenBackend<&'static str>>,
            bool,
            Decision<&'static str>,
        );
        let cases: [Case; 6] = [
            // No valid token (none, malformed, forged, expired, another route's): new session.
            (None, false, Decision::New(Outcome::Created)),
            (None, true, Decision::New(Outcome::Created)),
            // A valid token whose backend serves it: honoured, strict or not.
            (Some(Serves("b1")), false, Decision::Routed("b1")),
            (Some(Serves("b1")), true, Decision::Routed("b1")),
            // Its backend unavailable: re-pinned, or 503 when strict.
            (Some(Unavailable), false, Decision::New(Outcome::FailedOpen)),
            (Some(Unavailable), true, Decision::FailedClosed),
        ];
        for (token, strict, expected) in cases {
            let shown = format!("{token:?} strict={strict}");
            assert_eq!(decide(token, strict), expected, "{shown}");
        }
    }
}
