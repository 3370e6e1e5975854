//! Certificate rotation without a reload: every listener's certificate and key files are read
//! again every [`CHECK_EVERY`]; a changed pair that is valid is served to new connections at
//! once, an invalid one is ignored (the old pair keeps serving) and reported once it has
//! stayed invalid for [`REPORT_AFTER`]: files replaced one after the other are briefly a
//! mismatched pair, which the next check usually finds whole.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::time::Instant;

use super::listener::TlsListener;
use super::pair::{CertPair, PairFiles};
use crate::config::expiry_warning;

/// How often the files are read.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long a pair may stay invalid before the log says so.
pub const REPORT_AFTER: Duration = Duration::from_secs(10);

/// The background service that rotates the certificates of every TLS listener.
pub struct CertWatcher {
    listeners: Vec<Arc<TlsListener>>,
}

/// What one check found for one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The files hold what is served.
    Unchanged,
    /// A new valid pair is served from now on.
    Rotated,
    /// The files changed into an invalid pair; `report` once it has stayed so long enough.
    Invalid {
        /// The error to log now (once per invalid spell).
        report: Option<String>,
    },
}

/// The invalid spell of one certificate, if any.
#[derive(Debug, Default)]
pub struct Spell {
    since: Option<Instant>,
    reported: bool,
}

impl CertWatcher {
    /// Watches the certificates of `listeners`.
    pub fn new(listeners: Vec<Arc<TlsListener>>) -> CertWatcher {
        CertWatcher { listeners }
    }
}

/// Reads the files of row `idx` of `listener` again and serves them when they changed and are
/// valid.
pub fn check(listener: &TlsListener, idx: usize, spell: &mut Spell, now: Instant) -> Checked {
    let files: &PairFiles = &listener.files[idx];
    let served = listener.resolver.table().pairs()[idx].clone();
    let read = std::fs::read(&files.cert_path).and_then(|cert| {
        let key = std::fs::read(&files.key_path)?;
        Ok((cert, key))
    });
    let loaded = match read {
        Ok(source) if source == served.source => {
            *spell = Spell::default();
            return Checked::Unchanged;
        }
        Ok((cert, key)) => CertPair::from_pem(cert, key, files).map_err(|e| e.1),
        Err(e) => Err(format!("cannot read the certificate or key: {e}")),
    };
    match loaded {
        Ok(pair) => {
            *spell = Spell::default();
            log::info!(
                "listener {}: certificate `{}` reloaded for {}",
                listener.name,
                files.cert_file,
                pair.names.join(", ")
            );
            if let Some(warning) =
                expiry_warning(&pair, files, i64::from(crate::session::unix_now()))
            {
                log::warn!("listener {}: {warning}", listener.name);
            }
            listener.replace(idx, Arc::new(pair));
            Checked::Rotated
        }
        Err(why) => {
            let since = *spell.since.get_or_insert(now);
            let report =
                (!spell.reported && now.duration_since(since) >= REPORT_AFTER).then(|| {
                    spell.reported = true;
                    format!(
                    "listener {}: certificate `{}` changed on disk but is invalid ({why}); the \
                     previous certificate keeps serving",
                    listener.name, files.cert_file
                )
                });
            Checked::Invalid { report }
        }
    }
}

#[async_trait]
impl BackgroundService for CertWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut spells: Vec<Vec<Spell>> = self
            .listeners
            .iter()
            .map(|l| l.files.iter().map(|_| Spell::default()).collect())
            .collect();
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            let now = Instant::now();
            for (listener, spells) in self.listeners.iter().zip(spells.iter_mut()) {
                for (idx, spell) in spells.iter_mut().enumerate() {
                    if let Checked::Invalid { report: Some(why) } = check(listener, idx, spell, now)
                    {
                        log::error!("{why}");
                    }
                }
            }
        }
    }
}
