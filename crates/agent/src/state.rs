//! What the agent verified, kept in `STATE_DIR/state.json` (mode 0600) so that a restart knows
//! which deployments are done. A deployment counts only once its serial was seen in a
//! handshake; files written but not verified (the agent was killed before reloading, say) are
//! deployed again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::AgentError;

/// The state file's name.
pub const STATE_FILE: &str = "state.json";

/// What the agent knows about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertState {
    /// Version last deployed (or attempted).
    pub version: u32,
    /// Its serial.
    pub serial: String,
    /// Whether a handshake showed it at every verify endpoint.
    pub verified: bool,
    /// Why the last attempt failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// Everything in the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// By certificate name.
    #[serde(default)]
    pub certificates: BTreeMap<String, CertState>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Read the state (missing: empty; unreadable: empty, with a warning, so everything is deployed
/// and verified again).
pub fn load(dir: &Path) -> LocalState {
    let file = path(dir);
    match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %file.display(), error = %e, "unreadable state; deploying and verifying everything again");
            LocalState::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => LocalState::default(),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read the state; deploying and verifying everything again");
            LocalState::default()
        }
    }
}

/// Write the state atomically (blocking; small).
pub fn save(dir: &Path, state: &LocalState) -> Result<(), AgentError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AgentError::Io {
            what: format!("creating the state directory {}", dir.display()),
            source: e,
        })?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| AgentError::Protocol(e.to_string()))?;
    certfleet_deploy::files::write_one(&path(dir), &json, 0o600)?;
    Ok(())
}
