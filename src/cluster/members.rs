//! Who a cluster's backends are: what their source says (the config's list, or the last
//! discovery answer), runtime overrides from the admin API, and the state that belongs to each
//! backend's identity (health, outlier state, counters), which outlives the snapshots built
//! from them. Only publishers (discovery, the API, start) take the lock here; requests read
//! the published snapshot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus::IntCounter;
use serde::{Deserialize, Serialize};

use super::outlier::Outlier;
use crate::config::BackendState;
use crate::metrics::BackendRequestCells;
use crate::token::BackendTag;

/// Where a backend's state comes from, as `/status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The config file's `backends`.
    Config,
    /// Found by discovery.
    Discovery,
    /// Set through the runtime API (state or weight).
    Runtime,
}

impl Source {
    /// The word in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Discovery => "discovery",
            Source::Runtime => "runtime",
        }
    }
}

/// A backend as its source gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Stable id.
    pub id: String,
    /// The address as written (or `ip:port` when discovered).
    pub address: String,
    /// The address connected to.
    pub socket_addr: SocketAddr,
    /// Weight from the source.
    pub weight: usize,
    /// State from the source (`active` when discovered).
    pub state: BackendState,
    /// `Config` or `Discovery`.
    pub source: Source,
}

/// A state and/or weight set through the runtime API, with the source's values when it was set:
/// a reload whose config changes them drops the override (the config was edited since).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// The state set, if any.
    #[serde(default, with = "state_words")]
    pub state: Option<BackendState>,
    /// The weight set, if any.
    #[serde(default)]
    pub weight: Option<usize>,
    /// The source's state when it was set.
    #[serde(with = "state_word")]
    pub source_state: BackendState,
    /// The source's weight when it was set.
    pub source_weight: usize,
}

/// What belongs to a backend's identity rather than to one snapshot.
#[derive(Debug)]
pub struct Member {
    /// Unique in its cluster for the life of the process: the backend's row where one is needed
    /// (a request's refused backends).
    pub slot: usize,
    /// Health as the probes last reported it.
    pub health: AtomicBool,
    /// Passive health from real traffic.
    pub outlier: Outlier,
    /// Its token tag under each ring key (cluster and id, keyed).
    pub tags: Vec<BackendTag>,
    /// `tether_backend_sessions_routed_total{cluster,backend}`.
    pub sessions_routed: IntCounter,
    /// Its `tether_requests_total` counters, per route, resolved on first use.
    pub requests: BackendRequestCells,
}

impl Member {
    /// Whether its health probes pass (ejection aside).
    pub fn passes_probes(&self) -> bool {
        self.health.load(Ordering::Relaxed)
    }

    /// Whether it may take requests: its probes pass and outlier detection has not ejected it.
    pub fn is_available(&self) -> bool {
        self.health.load(Ordering::Relaxed) && !self.outlier.is_ejected_now()
    }
}

/// The membership of one cluster: the source's backends, the identities met so far, the
/// runtime overrides.
#[derive(Debug, Default)]
pub struct Registry {
    /// What the source says now.
    pub found: Vec<Found>,
    /// Identity state of the backends in `found`.
    pub members: HashMap<String, Arc<Member>>,
    /// Runtime overrides by backend id (kept when the backend is gone: it may come back).
    pub overrides: HashMap<String, Override>,
    /// The next member's slot.
    pub next_slot: usize,
}

impl Registry {
    /// The state, weight and source a backend has now: its override over the source's values.
    pub fn effective(&self, found: &Found) -> (BackendState, usize, Source) {
        match self.overrides.get(&found.id) {
            Some(o) => (
                o.state.unwrap_or(found.state),
                o.weight.unwrap_or(found.weight),
                Source::Runtime,
            ),
            None => (found.state, found.weight, found.source),
        }
    }

    /// Drops the overrides of configured backends whose config values changed since the
    /// override was set (the file was edited and reloaded): the config holds again. Returns
    /// the ids dropped.
    pub fn drop_outdated_overrides(&mut self) -> Vec<String> {
        let outdated: Vec<String> = self
            .found
            .iter()
            .filter(|f| f.source == Source::Config)
            .filter(|f| {
                self.overrides
                    .get(&f.id)
                    .is_some_and(|o| o.source_state != f.state || o.source_weight != f.weight)
            })
            .map(|f| f.id.clone())
            .collect();
        for id in &outdated {
            self.overrides.remove(id);
        }
        outdated
    }
}

/// Serde of a state as its word.
mod state_word {
    use super::BackendState;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(state: &BackendState, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(state.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BackendState, D::Error> {
        let word = String::deserialize(d)?;
        BackendState::from_word(&word)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown state `{word}`")))
    }
}

/// Serde of an optional state as its word.
mod state_words {
    use super::BackendState;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(state: &Option<BackendState>, s: S) -> Result<S::Ok, S::Error> {
        match state {
            Some(state) => s.serialize_some(state.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BackendState>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(word) => BackendState::from_word(&word)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown state `{word}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: &str, state: BackendState, weight: usize) -> Found {
        Found {
            id: id.into(),
            address: "127.0.0.1:1".into(),
            socket_addr: "127.0.0.1:1".parse().unwrap(),
            weight,
            state,
            source: Source::Config,
        }
    }

    #[test]
    fn an_override_wins_until_the_config_changes_under_it() {
        let mut r = Registry {
            found: vec![found("a", BackendState::Active, 1)],
            ..Registry::default()
        };
        r.overrides.insert(
            "a".into(),
            Override {
                state: Some(BackendState::Draining),
                weight: None,
                source_state: BackendState::Active,
                source_weight: 1,
            },
        );
        assert_eq!(
            r.effective(&r.found[0]),
            (BackendState::Draining, 1, Source::Runtime)
        );
        assert!(r.drop_outdated_overrides().is_empty());
        // The config now says weight 3: the operator edited it; the override goes.
        r.found[0].weight = 3;
        assert_eq!(r.drop_outdated_overrides(), vec!["a".to_string()]);
        assert_eq!(
            r.effective(&r.found[0]),
            (BackendState::Active, 3, Source::Config)
        );
    }

    #[test]
    fn overrides_read_back_as_written() {
        let o = Override {
            state: Some(BackendState::Disabled),
            weight: Some(7),
            source_state: BackendState::Active,
            source_weight: 1,
        };
        let text = serde_json::to_string(&o).unwrap();
        assert_eq!(
            text,
            r#"{"state":"disabled","weight":7,"source_state":"active","source_weight":1}"#
        );
        assert_eq!(serde_json::from_str::<Override>(&text).unwrap(), o);
        assert!(serde_json::from_str::<Override>(
            r#"{"state":"sleepy","source_state":"active","source_weight":1}"#
        )
        .is_err());
    }
}
