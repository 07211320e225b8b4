//! Durable file writes for the data directory, through `certfleet_deploy::files` (the one
//! atomic writer the CLI's export and the agent use too): temporary name created with its final
//! mode, write, fsync, rename, fsync the directory.

use std::io;
use std::path::Path;

/// Write `bytes` to `path` atomically with permission `mode` (e.g. `0o600`), whatever the
/// umask. The directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    certfleet_deploy::files::write_one(path, bytes, mode).map_err(into_io)
}

/// fsync a directory so that renames inside it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    certfleet_deploy::files::sync_dir(dir).map_err(into_io)
}

fn into_io(e: certfleet_deploy::DeployError) -> io::Error {
    match e {
        certfleet_deploy::DeployError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

/// Create a directory (and parents) with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_with_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    }
}
