//! DNS discovery (SPEC 8.1): a cluster's backends are the addresses a name resolves to (A and
//! AAAA with the configured port, or SRV targets with their ports and weights), asked again
//! every interval through `hickory-resolver`. A round that fails, times out or finds nothing
//! keeps the last good set; every failure is counted and logged here (Pingora's own discovery
//! drops them silently).
//!
//! Each round makes a resolver of its own (from a configuration read once): nothing carries
//! over between rounds, no cache and no connection. A kept TCP connection could be answered
//! from stale data: dnsmasq, for one, serves each TCP connection from a forked child holding
//! the records of the moment it was forked.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use pingora_error::{Error, ErrorType, Result};
use prometheus::{IntCounter, IntGauge};

use super::service::ROUND_TIMEOUT;
use super::{Cluster, Found, Source};
use crate::config::{BackendState, DiscoveryConfig, RecordKind, MAX_WEIGHT};

/// The most backends one discovery round takes (the first, by address); a larger answer is
/// cut and logged.
pub const MAX_DISCOVERED: usize = 1024;

/// The discovery of one cluster.
pub struct Discovery {
    config: DiscoveryConfig,
    /// The name as asked: fully qualified, so no search domain is tried.
    fqdn: String,
    setup: (ResolverConfig, ResolverOpts),
    /// tether's own listening addresses: a backend there would loop requests back.
    own: Vec<SocketAddr>,
    backends: IntGauge,
    errors: IntCounter,
}

impl Discovery {
    /// The discovery of cluster `cluster`, its series created at 0.
    pub fn new(
        cluster: &str,
        config: &DiscoveryConfig,
        metrics: &crate::metrics::Metrics,
        own: &[SocketAddr],
    ) -> Result<Discovery> {
        let (backends, errors) = metrics.discovery(cluster);
        Ok(Discovery {
            fqdn: format!("{}.", config.name),
            setup: resolver_setup(config)?,
            config: config.clone(),
            own: own.to_vec(),
            backends,
            errors,
        })
    }

    /// Time between rounds.
    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// One round: resolve, then publish the answer, or keep the last good set.
    pub async fn round(&self, cluster: &Cluster) {
        let answer = match tokio::time::timeout(ROUND_TIMEOUT, self.resolve()).await {
            Ok(Ok(found)) if found.is_empty() => Err("the answer holds no usable address".into()),
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}s", ROUND_TIMEOUT.as_secs())),
        };
        match answer {
            Ok(found) => {
                self.backends.set(found.len() as i64);
                log_changes(cluster, &found);
                cluster.set_found(found);
            }
            Err(e) => {
                self.errors.inc();
                log::error!(
                    "cluster {}: discovery of `{}` failed: {e}; keeping the {} backends found before",
                    cluster.config.name,
                    self.config.name,
                    cluster.backends().backends.len()
                );
            }
        }
    }

    /// The backends the name resolves to now, by id.
    async fn resolve(&self) -> Result<Vec<Found>, String> {
        let (config, options) = self.setup.clone();
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .map_err(|e| format!("cannot set up the resolver: {e}"))?;
        let mut found: BTreeMap<SocketAddr, usize> = BTreeMap::new();
        match (self.config.record, self.config.port) {
            (RecordKind::Address, Some(port)) => {
                for ip in addresses(&resolver, &self.fqdn).await? {
                    found.insert(SocketAddr::new(ip, port), 1);
                }
            }
            _ => {
                let answer = resolver
                    .srv_lookup(self.fqdn.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                for record in answer.answers() {
                    let RData::SRV(srv) = &record.data else {
                        continue;
                    };
                    if srv.port == 0 {
                        continue;
                    }
                    let target = srv.target.to_ascii();
                    let weight = usize::from(srv.weight).clamp(1, MAX_WEIGHT as usize);
                    for ip in addresses(&resolver, &target).await? {
                        let w = found.entry(SocketAddr::new(ip, srv.port)).or_insert(0);
                        *w = (*w).max(weight);
                    }
                }
            }
        }
        found.retain(|addr, _| {
            let looped = is_own(addr, &self.own);
            if looped {
                log::warn!(
                    "discovery of `{}`: {addr} is tether's own listening address; left out",
                    self.config.name
                );
            }
            !looped
        });
        if found.len() > MAX_DISCOVERED {
            log::warn!(
                "discovery of `{}`: {} addresses, taking the first {MAX_DISCOVERED}",
                self.config.name,
                found.len()
            );
        }
        Ok(found
            .into_iter()
            .take(MAX_DISCOVERED)
            .map(|(addr, weight)| Found {
                id: addr.to_string(),
                address: addr.to_string(),
                socket_addr: addr,
                weight,
                state: BackendState::Active,
                source: Source::Discovery,
            })
            .collect())
    }
}

/// The usable addresses of `name` (A and AAAA): never an unspecified, multicast or broadcast
/// address.
async fn addresses(resolver: &TokioResolver, name: &str) -> Result<Vec<IpAddr>, String> {
    let answer = resolver.lookup_ip(name).await.map_err(|e| e.to_string())?;
    Ok(answer.iter().filter(usable).collect())
}

/// Whether a backend can be at this address.
fn usable(ip: &IpAddr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast() && !matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

/// Whether `addr` reaches one of tether's own listeners (`own`), as far as an address shows it:
/// the same address, or the same port on a loopback address when the listener is on all
/// addresses.
fn is_own(addr: &SocketAddr, own: &[SocketAddr]) -> bool {
    own.iter().any(|o| {
        o == addr || (o.port() == addr.port() && o.ip().is_unspecified() && addr.ip().is_loopback())
    })
}

/// Logs the backends a round adds and removes.
fn log_changes(cluster: &Cluster, found: &[Found]) {
    let before = cluster.backends();
    let added: Vec<&str> = found
        .iter()
        .filter(|f| !before.backends.iter().any(|b| b.id == f.id))
        .map(|f| f.id.as_str())
        .collect();
    let removed: Vec<&str> = before
        .backends
        .iter()
        .filter(|b| !found.iter().any(|f| f.id == b.id))
        .map(|b| b.id.as_str())
        .collect();
    if !added.is_empty() || !removed.is_empty() {
        log::info!(
            "cluster {}: discovery found {} backends (added: {}; removed: {})",
            cluster.config.name,
            found.len(),
            list_or_none(&added),
            list_or_none(&removed)
        );
    }
}

fn list_or_none(ids: &[&str]) -> String {
    if ids.is_empty() {
        "none".to_string()
    } else {
        ids.join(", ")
    }
}

/// How each round's resolver asks: `nameservers` (UDP, then TCP for truncated answers) or the
/// system's (read once, here), no cache, one attempt of at most the round's timeout.
fn resolver_setup(config: &DiscoveryConfig) -> Result<(ResolverConfig, ResolverOpts)> {
    let (resolver_config, mut options) = if config.nameservers.is_empty() {
        hickory_resolver::system_conf::read_system_conf().map_err(|e| {
            Error::explain(
                ErrorType::InternalError,
                format!(
                    "cannot read the system's resolver configuration for `{}`: {e}",
                    config.name
                ),
            )
        })?
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        (
            ResolverConfig::from_name_servers(servers),
            ResolverOpts::default(),
        )
    };
    options.timeout = ROUND_TIMEOUT;
    options.attempts = 1;
    options.cache_size = 0;
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    Ok((resolver_config, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_backend_at_tethers_own_address() {
        let own: Vec<SocketAddr> = vec![
            "127.0.0.1:9100".parse().unwrap(),
            "0.0.0.0:8080".parse().unwrap(),
        ];
        let is = |a: &str| is_own(&a.parse().unwrap(), &own);
        assert!(is("127.0.0.1:9100"));
        assert!(is("127.0.0.5:8080"));
        assert!(!is("127.0.0.2:9100"));
        assert!(!is("10.0.0.1:8080"));
    }

    #[test]
    fn no_backend_at_an_unusable_address() {
        for ip in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "ff02::1"] {
            assert!(!usable(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.2", "10.0.0.1", "::1", "fd00::1"] {
            assert!(usable(&ip.parse().unwrap()), "{ip}");
        }
    }
}
