//! The atomic multi-file writer: a set of files in one directory is replaced all at once or
//! not at all.
//!
//! [`write_files`] works in steps, so that a reader (nginx reloading, a person looking) never
//! sees a new certificate beside an old key:
//!
//! 1. The directory is checked (a regular file at its place is an error that says so) or
//!    created with an explicit mode whatever the umask: 0755, or 0700 (0750 with a group) when
//!    it holds only keys.
//! 2. Each file to replace is inspected with `lstat`: a symbolic link or a non-regular file is
//!    refused, naming the file. Owner, group and mode of a replaced file are carried over;
//!    a new private key keeps only the old one's group-read bit ([`carried_key_mode`]).
//!    Explicit [`Ownership`] wins.
//! 3. Every new file is written to a temporary name `.NAME.certfleet-tmp-PID-N`, created with
//!    `O_CREAT|O_EXCL|O_NOFOLLOW` and its final mode (so a key is never readable by others,
//!    not even for a moment), given its owner and group, written and fsynced.
//! 4. The files being replaced are hard-linked to `.NAME.certfleet-old-PID-N` (same inode,
//!    so same owner and mode) and a journal (`.certfleet-journal`) lists every rename.
//! 5. The temporary files are renamed into place and the directory is fsynced. If a rename
//!    fails, the files already renamed are put back from their links and the error names the
//!    file. If the process dies, the next write (or [`recover`]) finishes the renames listed in
//!    the journal: every temporary file was complete before the journal was written.
//! 6. The links become the previous generation `.NAME.certfleet-prev` (when
//!    [`WriteOptions::keep_previous`]), which [`restore_previous`] puts back; otherwise they
//!    are removed.
//!
//! A set whose files all already have the wanted contents, owner and mode is left alone (and
//! so is its previous generation).
//!
//! [`carried_key_mode`]: crate::perms::carried_key_mode

use std::cell::Cell;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::DeployError;
use crate::perms::{self, Ownership};

/// The journal of a write in progress.
pub const JOURNAL: &str = ".certfleet-journal";
/// Marks temporary files.
const TMP_TAG: &str = ".certfleet-tmp-";
/// Marks links to the files being replaced.
const OLD_TAG: &str = ".certfleet-old-";
/// Suffix of the previous generation.
const PREV_SUFFIX: &str = ".certfleet-prev";
/// First line of a journal.
const JOURNAL_HEADER: &str = "certfleet-journal v1";
/// Files larger than this are never compared, just replaced.
const MAX_COMPARE_BYTES: u64 = 1 << 20;

/// One file of a set.
pub struct PlannedFile {
    /// Plain file name inside the directory.
    pub name: String,
    /// The bytes.
    pub contents: Vec<u8>,
    /// Whether it holds a private key (key modes apply; the bytes are wiped on drop).
    pub secret: bool,
    /// A mode for this file only, overriding [`Ownership`] and carry-over.
    pub mode: Option<u32>,
    /// Exact owner, group and mode (used when restoring a previous generation).
    pub exact: Option<Attrs>,
}

impl PlannedFile {
    /// A file with default treatment.
    pub fn new(name: impl Into<String>, contents: impl Into<Vec<u8>>, secret: bool) -> Self {
        Self {
            name: name.into(),
            contents: contents.into(),
            secret,
            mode: None,
            exact: None,
        }
    }
}

impl Drop for PlannedFile {
    fn drop(&mut self) {
        if self.secret {
            self.contents.iter_mut().for_each(|b| *b = 0);
            std::hint::black_box(&self.contents);
        }
    }
}

/// Owner, group and permission bits of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
}

impl Attrs {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        }
    }
}

/// How a set is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Explicit owner, group and modes.
    pub ownership: Ownership,
    /// Keep the replaced files as the previous generation (`.NAME.certfleet-prev`).
    pub keep_previous: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// File name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// Its owner, group and mode now.
    pub attrs: Attrs,
    /// Whether a file was there before.
    pub replaced: bool,
}

/// What [`write_files`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// Every file of the set.
    pub files: Vec<WrittenFile>,
    /// Whether anything changed (false when every file already had its contents and mode).
    pub changed: bool,
}

/// What the owner, group and mode of a file will be; `None` keeps what creation gives.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    uid: Option<u32>,
    gid: Option<u32>,
    mode: u32,
}

struct Plan<'a> {
    file: &'a PlannedFile,
    path: PathBuf,
    existing: Option<Attrs>,
    wanted: Wanted,
    unchanged: bool,
    temp: Option<PathBuf>,
    old: Option<PathBuf>,
}

/// Write `files` into `dir` all at once (see the module docs for the steps).
pub fn write_files(
    dir: &Path,
    files: &[PlannedFile],
    options: &WriteOptions,
) -> Result<WriteReport, DeployError> {
    for f in files {
        check_file_name(&f.name)?;
    }
    let only_keys = !files.is_empty() && files.iter().all(|f| f.secret);
    ensure_dir(
        dir,
        dir_mode(only_keys, &options.ownership),
        &options.ownership,
    )?;
    recover(dir)?;
    let mut plans = files
        .iter()
        .map(|f| plan(dir, f, &options.ownership))
        .collect::<Result<Vec<_>, _>>()?;
    if plans.iter().all(|p| p.unchanged) {
        return Ok(report(&plans, false));
    }
    let result = commit(dir, &mut plans, options.keep_previous);
    if result.is_err() {
        discard(&plans);
    }
    result?;
    Ok(report(&plans, true))
}

fn report(plans: &[Plan<'_>], changed: bool) -> WriteReport {
    let files = plans
        .iter()
        .map(|p| WrittenFile {
            name: p.file.name.clone(),
            path: p.path.clone(),
            attrs: fs::symlink_metadata(&p.path)
                .map(|m| Attrs::of(&m))
                .unwrap_or(Attrs {
                    uid: 0,
                    gid: 0,
                    mode: p.wanted.mode,
                }),
            replaced: p.existing.is_some(),
        })
        .collect();
    WriteReport { files, changed }
}

fn commit(dir: &Path, plans: &mut [Plan<'_>], keep_previous: bool) -> Result<(), DeployError> {
    for p in plans.iter_mut().filter(|p| !p.unchanged) {
        p.temp = Some(write_temp(dir, p)?);
    }
    for p in plans.iter_mut().filter(|p| p.existing.is_some()) {
        let old = dir.join(format!(".{}{OLD_TAG}{}", p.file.name, unique()));
        fs::hard_link(&p.path, &old)
            .map_err(|e| DeployError::io("keeping the current version of", &p.path, e))?;
        p.old = Some(old);
    }
    write_journal(dir, plans)?;
    for i in 0..plans.len() {
        let Some(temp) = plans[i].temp.clone() else {
            continue;
        };
        if let Err(e) = rename_into_place(&temp, &plans[i].path) {
            undo_renames(dir, &plans[..i]);
            return Err(DeployError::io("renaming into place", &plans[i].path, e));
        }
        plans[i].temp = None;
    }
    sync_dir(dir)?;
    for p in plans.iter_mut() {
        if let Some(old) = p.old.take() {
            let kept = keep_previous && fs::rename(&old, prev_path(dir, &p.file.name)).is_ok();
            if !kept {
                let _ = fs::remove_file(&old);
            }
        }
    }
    remove_journal(dir)
}

/// Put back the files renamed before a failure (their links hold the old contents) and
/// remove files that did not exist before.
fn undo_renames(dir: &Path, done: &[Plan<'_>]) {
    for p in done.iter().filter(|p| !p.unchanged) {
        let restored = match &p.old {
            Some(old) => fs::rename(old, &p.path),
            None => fs::remove_file(&p.path),
        };
        if let Err(e) = restored {
            tracing::error!(file = %p.path.display(), error = %e, "could not undo a rename");
        }
    }
    let _ = sync_dir(dir);
    let _ = remove_journal(dir);
}

/// Remove what a failed commit left: temporary files, links, the journal.
fn discard(plans: &[Plan<'_>]) {
    for p in plans {
        for path in [&p.temp, &p.old].into_iter().flatten() {
            let _ = fs::remove_file(path);
        }
    }
    if let Some(dir) = plans.first().and_then(|p| p.path.parent()) {
        let _ = remove_journal(dir);
    }
}

fn plan<'a>(dir: &Path, file: &'a PlannedFile, own: &Ownership) -> Result<Plan<'a>, DeployError> {
    let path = dir.join(&file.name);
    let existing = inspect(&path)?;
    let wanted = wanted(file, existing, own);
    let unchanged = match existing {
        Some(a) => {
            a.mode == wanted.mode
                && wanted.uid.is_none_or(|u| u == a.uid)
                && wanted.gid.is_none_or(|g| g == a.gid)
                && same_contents(&path, &file.contents)
        }
        None => false,
    };
    Ok(Plan {
        file,
        path,
        existing,
        wanted,
        unchanged,
        temp: None,
        old: None,
    })
}

/// The owner, group and mode a file gets: exact > per-file mode > explicit ownership >
/// carried over from the file it replaces > defaults.
fn wanted(file: &PlannedFile, existing: Option<Attrs>, own: &Ownership) -> Wanted {
    if let Some(exact) = file.exact {
        return Wanted {
            uid: Some(exact.uid),
            gid: Some(exact.gid),
            mode: exact.mode,
        };
    }
    let carried = |mode: fn(&Attrs) -> u32| existing.as_ref().map(mode);
    let mode = if file.secret {
        file.mode.or(own.key_mode).unwrap_or_else(|| {
            if own.group.is_some() {
                perms::KEY_MODE_WITH_GROUP
            } else {
                carried(|a| perms::carried_key_mode(a.mode)).unwrap_or(perms::KEY_MODE)
            }
        })
    } else {
        file.mode
            .or(own.mode)
            .or_else(|| carried(|a| a.mode))
            .unwrap_or(perms::PUBLIC_MODE)
    };
    Wanted {
        uid: own.owner.or(existing.map(|a| a.uid)),
        gid: own.group.or(existing.map(|a| a.gid)),
        mode,
    }
}

/// `lstat` a file to be replaced: `None` if absent; links and non-regular files are refused.
fn inspect(path: &Path) -> Result<Option<Attrs>, DeployError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(DeployError::Symlink {
            path: path.to_path_buf(),
        }),
        Ok(m) if m.is_file() => Ok(Some(Attrs::of(&m))),
        Ok(m) => Err(DeployError::NotAFile {
            path: path.to_path_buf(),
            what: describe(&m),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DeployError::io("inspecting", path, e)),
    }
}

fn describe(meta: &fs::Metadata) -> String {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let what = if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a device file"
    };
    what.to_string()
}

fn same_contents(path: &Path, want: &[u8]) -> bool {
    let read = || -> io::Result<Vec<u8>> {
        let file = open_nofollow_read(path)?;
        if file.metadata()?.len() > MAX_COMPARE_BYTES {
            return Ok(Vec::new());
        }
        let mut buf = Vec::new();
        file.take(MAX_COMPARE_BYTES).read_to_end(&mut buf)?;
        Ok(buf)
    };
    match read() {
        Ok(mut have) => {
            let same = have == want;
            have.iter_mut().for_each(|b| *b = 0);
            same
        }
        Err(_) => false,
    }
}

fn open_nofollow_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
}

/// Create, own, chmod, write and fsync the temporary file of `p`.
fn write_temp(dir: &Path, p: &Plan<'_>) -> Result<PathBuf, DeployError> {
    let temp = dir.join(format!(".{}{TMP_TAG}{}", p.file.name, unique()));
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(p.wanted.mode)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&temp);
    let mut file =
        created.map_err(|e| DeployError::io("creating a temporary file for", &p.path, e))?;
    let result = (|| {
        let meta = file
            .metadata()
            .map_err(|e| DeployError::io("inspecting the temporary file for", &p.path, e))?;
        let uid = p.wanted.uid.filter(|u| *u != meta.uid());
        let gid = p.wanted.gid.filter(|g| *g != meta.gid());
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::fchown(&file, uid, gid)
                .map_err(|e| DeployError::io("setting the owner and group of", &p.path, e))?;
        }
        // The mode given at creation went through the umask; set it exactly.
        file.set_permissions(Permissions::from_mode(p.wanted.mode))
            .map_err(|e| DeployError::io("setting the mode of", &p.path, e))?;
        file.write_all(&p.file.contents)
            .map_err(|e| DeployError::io("writing", &p.path, e))?;
        file.sync_all()
            .map_err(|e| DeployError::io("flushing to disk", &p.path, e))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(temp)
}

thread_local! {
    /// Tests make the rename of the n-th file of a set fail, to exercise the undo path.
    static FAIL_RENAME_AT: Cell<Option<usize>> = const { Cell::new(None) };
    static RENAMES: Cell<usize> = const { Cell::new(0) };
}

fn rename_into_place(temp: &Path, path: &Path) -> io::Result<()> {
    let n = RENAMES.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    if FAIL_RENAME_AT.with(Cell::get) == Some(n) {
        return Err(io::Error::other("injected rename failure"));
    }
    fs::rename(temp, path)
}

/// In tests: make the `n`-th rename of this thread's next writes fail (counting from 0).
#[cfg(test)]
fn fail_rename_at(n: Option<usize>) {
    FAIL_RENAME_AT.with(|c| c.set(n));
    RENAMES.with(|c| c.set(0));
}

/// Put the previous generation of `names` back (exact contents, owner and mode), all at once.
/// Returns how many files were restored (0 when there is no previous generation).
pub fn restore_previous(dir: &Path, names: &[&str]) -> Result<usize, DeployError> {
    let mut planned = Vec::new();
    for name in names {
        check_file_name(name)?;
        let prev = prev_path(dir, name);
        let attrs = match inspect(&prev)? {
            Some(a) => a,
            None => continue,
        };
        let mut contents = Vec::new();
        open_nofollow_read(&prev)
            .and_then(|mut f| f.read_to_end(&mut contents))
            .map_err(|e| DeployError::io("reading", &prev, e))?;
        let mut file = PlannedFile::new(*name, contents, true);
        file.exact = Some(attrs);
        planned.push(file);
    }
    if planned.is_empty() {
        return Ok(0);
    }
    write_files(dir, &planned, &WriteOptions::default())?;
    Ok(planned.len())
}

/// Where the previous generation of `name` is kept.
pub fn prev_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}{PREV_SUFFIX}"))
}

fn check_file_name(name: &str) -> Result<(), DeployError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.starts_with(".certfleet")
        && !name.contains(TMP_TAG)
        && !name.contains(OLD_TAG)
        && !name.ends_with(PREV_SUFFIX)
        && !name.chars().any(|c| c == '/' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(DeployError::FileName(name.to_string()))
    }
}

/// fsync a directory so that renames inside it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), DeployError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| DeployError::io("flushing the directory", dir, e))
}

fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Write one small file atomically (temporary name, fsync, rename, directory fsync) with
/// `mode` set exactly; for state and token files. The directory must exist.
///
/// Unlike [`write_files`] there is no journal and no recovery of the directory: a single
/// rename is atomic by itself, and several writers (HTTP-01 responses of concurrent orders in
/// one webroot) may use the same directory at once without touching each other's files.
///
/// # Errors
/// [`DeployError::Symlink`] when `path` is a symbolic link (it is never followed),
/// [`DeployError::NotAFile`] when it is a directory or another non-regular file,
/// [`DeployError::Io`] naming the step that failed.
pub fn write_one(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DeployError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| DeployError::FileName(path.display().to_string()))?;
    check_file_name(&name)?;
    inspect(path)?;
    let temp = dir.join(format!(".{name}{TMP_TAG}{}", unique()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&temp)
            .map_err(|e| DeployError::io("creating a temporary file for", path, e))?;
        // The mode given at creation went through the umask; set it exactly.
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| DeployError::io("setting the mode of", path, e))?;
        file.write_all(bytes)
            .map_err(|e| DeployError::io("writing", path, e))?;
        file.sync_all()
            .map_err(|e| DeployError::io("flushing to disk", path, e))?;
        fs::rename(&temp, path).map_err(|e| DeployError::io("renaming into place", path, e))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

mod dirs;
mod journal;
#[cfg(test)]
mod tests;

use dirs::{dir_mode, ensure_dir};
pub use journal::{Recovery, recover};
use journal::{remove_journal, write_journal};
