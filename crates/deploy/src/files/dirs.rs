//! Directories a set is written into: checked, or created with explicit modes whatever the
//! umask.

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::describe;
use crate::DeployError;
use crate::perms::{self, Ownership};

pub(super) fn dir_mode(only_keys: bool, own: &Ownership) -> u32 {
    match (only_keys, own.group.is_some()) {
        (true, true) => perms::KEY_DIR_MODE_WITH_GROUP,
        (true, false) => perms::KEY_DIR_MODE,
        (false, _) => perms::DIR_MODE,
    }
}

/// Check that `dir` is a directory, or create it (and missing parents) with explicit modes.
pub(super) fn ensure_dir(dir: &Path, mode: u32, own: &Ownership) -> Result<(), DeployError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => match fs::metadata(dir) {
            Ok(target) if target.is_dir() => Ok(()),
            Ok(target) => Err(DeployError::NotADirectory {
                path: dir.to_path_buf(),
                what: format!("a symbolic link to {}", describe(&target)),
            }),
            Err(_) => Err(DeployError::NotADirectory {
                path: dir.to_path_buf(),
                what: "a dangling symbolic link".into(),
            }),
        },
        Ok(m) => Err(DeployError::NotADirectory {
            path: dir.to_path_buf(),
            what: describe(&m),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(dir, mode, own),
        Err(e) => Err(DeployError::io("inspecting", dir, e)),
    }
}

fn create_dir(dir: &Path, mode: u32, own: &Ownership) -> Result<(), DeployError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent, perms::DIR_MODE, &Ownership::default())?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(DeployError::io("creating the directory", dir, e)),
    }
    if own.owner.is_some() || own.group.is_some() {
        std::os::unix::fs::chown(dir, own.owner, own.group)
            .map_err(|e| DeployError::io("setting the owner and group of", dir, e))?;
    }
    // mkdir's mode goes through the umask; set it exactly.
    fs::set_permissions(dir, Permissions::from_mode(mode))
        .map_err(|e| DeployError::io("setting the mode of", dir, e))
}
