//! The journal that makes a set's renames finish after a crash, and the clean-up of what
//! interrupted writers leave behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{
    JOURNAL, JOURNAL_HEADER, OLD_TAG, Plan, TMP_TAG, check_file_name, prev_path, sync_dir, unique,
};
use crate::DeployError;

pub(super) fn write_journal(dir: &Path, plans: &[Plan<'_>]) -> Result<(), DeployError> {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut text = format!("{JOURNAL_HEADER}\n");
    for p in plans {
        if let Some(temp) = &p.temp {
            text.push_str(&format!("R\t{}\t{}\n", name(temp), p.file.name));
        }
        if let Some(old) = &p.old {
            text.push_str(&format!("B\t{}\t{}\n", name(old), p.file.name));
        }
    }
    let path = dir.join(JOURNAL);
    let temp = dir.join(format!("{JOURNAL}{TMP_TAG}{}", unique()));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&temp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&temp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&temp);
        DeployError::io("writing the journal", &path, e)
    })
}

pub(super) fn remove_journal(dir: &Path) -> Result<(), DeployError> {
    let path = dir.join(JOURNAL);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DeployError::io("removing the journal", &path, e)),
    }
}

/// What [`recover`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Files whose interrupted rename was finished.
    pub finished: Vec<String>,
    /// Leftover temporary files and links removed.
    pub removed: usize,
}

/// Finish a write that a crash interrupted (the renames its journal lists) and remove
/// temporary files left by processes that are gone. [`write_files`] calls it first.
pub fn recover(dir: &Path) -> Result<Recovery, DeployError> {
    let mut out = Recovery::default();
    let journal = dir.join(JOURNAL);
    match fs::read_to_string(&journal) {
        Ok(text) => {
            let entries = parse_journal(&journal, &text)?;
            for (kind, from, to) in entries {
                let from = dir.join(from);
                if fs::symlink_metadata(&from).is_err() {
                    continue;
                }
                let target = match kind {
                    'R' => {
                        out.finished.push(to.clone());
                        dir.join(&to)
                    }
                    _ => prev_path(dir, &to),
                };
                fs::rename(&from, &target)
                    .map_err(|e| DeployError::io("finishing an interrupted write of", target, e))?;
            }
            sync_dir(dir)?;
            remove_journal(dir)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(DeployError::io("reading", journal, e)),
    }
    out.removed = remove_stale(dir)?;
    Ok(out)
}

fn parse_journal(path: &Path, text: &str) -> Result<Vec<(char, String, String)>, DeployError> {
    let bad = |reason: &str| DeployError::Journal {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut lines = text.lines();
    if lines.next() != Some(JOURNAL_HEADER) {
        return Err(bad(
            "unknown format; remove it after checking the files by hand",
        ));
    }
    let mut out = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split('\t').collect();
        let ok = parts.len() == 3
            && (parts[0] == "R" || parts[0] == "B")
            && parts[1..]
                .iter()
                .all(|p| check_file_name(p).is_ok() || p.starts_with('.'))
            && parts[1..]
                .iter()
                .all(|p| !p.contains('/') && *p != ".." && *p != ".");
        if !ok {
            return Err(bad(
                "unreadable line; remove it after checking the files by hand",
            ));
        }
        let kind = if parts[0] == "R" { 'R' } else { 'B' };
        out.push((kind, parts[1].to_string(), parts[2].to_string()));
    }
    Ok(out)
}

/// Remove `.NAME.certfleet-tmp-PID-N` and `.NAME.certfleet-old-PID-N` files whose process is gone.
fn remove_stale(dir: &Path) -> Result<usize, DeployError> {
    let entries = fs::read_dir(dir).map_err(|e| DeployError::io("listing", dir, e))?;
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = [TMP_TAG, OLD_TAG]
            .iter()
            .find_map(|tag| name.split_once(tag).map(|(_, rest)| rest.to_string()))
        else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        let alive = pid != std::process::id().to_string()
            && !pid.is_empty()
            && Path::new("/proc").join(pid).exists();
        if name.starts_with('.') && !alive && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}
