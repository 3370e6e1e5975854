//! `admin.state_file`: the runtime overrides of every cluster, written whole and atomically
//! (a new file renamed over the old) after each change through the API, and read at start, so
//! a drain survives reloads, upgrades and restarts (HAProxy's `server-state-file` idea).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Cluster, Override};

/// The file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    version: u32,
    /// Cluster name -> backend id -> override.
    clusters: BTreeMap<String, BTreeMap<String, Override>>,
}

/// Where runtime states are kept.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file at `path`.
    pub fn new(path: &Path) -> StateFile {
        StateFile {
            path: path.to_path_buf(),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The overrides kept, by cluster name; none when the file does not exist yet.
    pub fn read(&self) -> Result<HashMap<String, HashMap<String, Override>>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(format!("cannot read `{}`: {e}", self.path.display())),
        };
        let contents: Contents = serde_json::from_str(&text)
            .map_err(|e| format!("`{}` is not a tether state file: {e}", self.path.display()))?;
        Ok(contents
            .clusters
            .into_iter()
            .map(|(name, backends)| (name, backends.into_iter().collect()))
            .collect())
    }

    /// Writes the overrides of `clusters`: to a new file beside it, synced, then renamed over
    /// the old one, so a reader (or a crash) sees the old file or the new one, never half.
    pub fn write(&self, clusters: &[Arc<Cluster>]) -> std::io::Result<()> {
        let contents = Contents {
            version: 1,
            clusters: clusters
                .iter()
                .map(|c| (c.config.name.clone(), c.overrides().into_iter().collect()))
                .filter(|(_, backends): &(String, BTreeMap<String, Override>)| !backends.is_empty())
                .collect(),
        };
        let mut text = serde_json::to_vec_pretty(&contents).map_err(std::io::Error::other)?;
        text.push(b'\n');
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}.tmp", std::process::id()));
        let temp = self.path.with_file_name(name);
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, &self.path)
    }

    /// Reads the file and hands each cluster its overrides (logging a file that cannot be
    /// read: tether starts with the config's states then).
    pub fn restore(&self, clusters: &[Arc<Cluster>]) {
        let mut kept = match self.read() {
            Ok(kept) => kept,
            Err(e) => {
                log::error!("runtime backend states not restored: {e}");
                return;
            }
        };
        for cluster in clusters {
            if let Some(overrides) = kept.remove(&cluster.config.name) {
                cluster.restore_overrides(overrides);
            }
        }
        for name in kept.keys() {
            log::info!("state file: cluster `{name}` is no longer configured; its runtime states are dropped");
        }
        // What was dropped is dropped from the file too.
        if let Err(e) = self.write(clusters) {
            log::error!("cannot write `{}`: {e}", self.path.display());
        }
    }
}
