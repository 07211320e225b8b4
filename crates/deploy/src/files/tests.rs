//! Unit tests of the atomic writer on a real filesystem.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use super::*;

/// The group the ownership checks hand files to (Debian's `nogroup`).
const OTHER_GROUP: u32 = 65534;

fn set(tag: &str) -> Vec<PlannedFile> {
    vec![
        PlannedFile::new("cert.pem", format!("cert {tag}\n"), false),
        PlannedFile::new("chain.pem", format!("chain {tag}\n"), false),
        PlannedFile::new("privkey.pem", format!("key {tag}\n"), true),
    ]
}

fn keep() -> WriteOptions {
    WriteOptions {
        keep_previous: true,
        ..WriteOptions::default()
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap()
}

/// Names in `dir` that start with a dot, other than the previous generation.
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && !n.ends_with(PREV_SUFFIX))
        .collect()
}

fn require_root() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test changes file ownership and must run as root"
    );
}

#[test]
fn a_new_set_gets_default_modes_and_a_0755_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/www");
    let report = write_files(&dir, &set("1"), &WriteOptions::default()).unwrap();
    assert!(report.changed);
    assert_eq!(mode(&dir.join("cert.pem")), 0o644);
    assert_eq!(mode(&dir.join("chain.pem")), 0o644);
    assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(
        mode(&tmp.path().join("a/b")),
        0o755,
        "parents get explicit modes too"
    );
    assert_eq!(read(&dir, "privkey.pem"), "key 1\n");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[test]
fn a_directory_of_keys_only_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let files = vec![PlannedFile::new("privkey.pem", "k\n", true)];
    write_files(&dir, &files, &WriteOptions::default()).unwrap();
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn replaced_files_keep_owner_group_and_mode_but_keys_never_get_world_bits() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_files(dir, &set("1"), &WriteOptions::default()).unwrap();
    let key = dir.join("privkey.pem");
    let cert = dir.join("cert.pem");
    std::os::unix::fs::chown(&key, None, Some(OTHER_GROUP)).unwrap();
    fs::set_permissions(&key, Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&cert, Some(OTHER_GROUP), Some(OTHER_GROUP)).unwrap();
    fs::set_permissions(&cert, Permissions::from_mode(0o604)).unwrap();

    write_files(dir, &set("2"), &WriteOptions::default()).unwrap();
    let meta = fs::metadata(&key).unwrap();
    assert_eq!(
        (meta.gid(), mode(&key)),
        (OTHER_GROUP, 0o640),
        "key keeps group and g+r"
    );
    let meta = fs::metadata(&cert).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), mode(&cert)),
        (OTHER_GROUP, OTHER_GROUP, 0o604)
    );
    assert_eq!(read(dir, "privkey.pem"), "key 2\n");

    fs::set_permissions(&key, Permissions::from_mode(0o666)).unwrap();
    write_files(dir, &set("3"), &WriteOptions::default()).unwrap();
    assert_eq!(
        mode(&key),
        0o640,
        "world bits of an old key are not carried over"
    );
}

#[test]
fn explicit_group_and_key_mode_win() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let options = WriteOptions {
        ownership: Ownership {
            group: Some(OTHER_GROUP),
            ..Ownership::default()
        },
        keep_previous: false,
    };
    write_files(&dir, &set("1"), &options).unwrap();
    let key = dir.join("privkey.pem");
    assert_eq!(
        (fs::metadata(&key).unwrap().gid(), mode(&key)),
        (OTHER_GROUP, 0o640)
    );
    assert_eq!(
        fs::metadata(&dir).unwrap().gid(),
        OTHER_GROUP,
        "a created dir gets the group"
    );
    let options = WriteOptions {
        ownership: Ownership {
            key_mode: Some(0o600),
            ..options.ownership
        },
        keep_previous: false,
    };
    write_files(&dir, &set("2"), &options).unwrap();
    assert_eq!(mode(&key), 0o600);
}

#[test]
fn a_planted_symlink_is_refused_and_its_target_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    write_files(&dir, &set("1"), &WriteOptions::default()).unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    fs::remove_file(dir.join("privkey.pem")).unwrap();
    symlink(&victim, dir.join("privkey.pem")).unwrap();
    let err = write_files(&dir, &set("2"), &WriteOptions::default()).unwrap_err();
    assert!(matches!(err, DeployError::Symlink { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("privkey.pem") && text.contains("symbolic link"),
        "{text}"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(read(&dir, "cert.pem"), "cert 1\n", "nothing replaced");
    assert!(leftovers(&dir).is_empty());
}

#[test]
fn a_directory_in_place_of_a_file_is_named_and_nothing_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_files(dir, &set("1"), &WriteOptions::default()).unwrap();
    fs::remove_file(dir.join("privkey.pem")).unwrap();
    fs::create_dir(dir.join("privkey.pem")).unwrap();
    let err = write_files(dir, &set("2"), &WriteOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("privkey.pem") && text.contains("a directory"),
        "{text}"
    );
    assert_eq!(read(dir, "cert.pem"), "cert 1\n");
    assert_eq!(read(dir, "chain.pem"), "chain 1\n");
    assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));
}

#[test]
fn a_regular_file_as_the_directory_is_said_so() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain");
    fs::write(&file, "x").unwrap();
    let err = write_files(&file, &set("1"), &WriteOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{} is a regular file, not a directory", file.display())
    );
}

#[test]
fn a_failed_rename_puts_the_earlier_files_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut files = set("1");
    files.truncate(2);
    write_files(dir, &files, &WriteOptions::default()).unwrap();
    fail_rename_at(Some(2));
    let err = write_files(dir, &set("2"), &keep()).unwrap_err();
    fail_rename_at(None);
    let text = err.to_string();
    assert!(
        text.contains("renaming into place") && text.contains("privkey.pem"),
        "{text}"
    );
    assert_eq!(read(dir, "cert.pem"), "cert 1\n");
    assert_eq!(read(dir, "chain.pem"), "chain 1\n");
    assert!(
        !dir.join("privkey.pem").exists(),
        "a file that was new is removed again"
    );
    assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));
}

#[test]
fn an_interrupted_write_is_finished_from_its_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_files(dir, &set("1"), &WriteOptions::default()).unwrap();
    // What a writer killed after its first rename leaves: the journal, one temporary file
    // still to rename, and links to the replaced files. PID 0 is never a live writer.
    let dead = "0-7";
    fs::write(dir.join(format!(".chain.pem{TMP_TAG}{dead}")), "chain 2\n").unwrap();
    fs::write(dir.join("cert.pem.new"), "cert 2\n").unwrap();
    fs::hard_link(
        dir.join("cert.pem"),
        dir.join(format!(".cert.pem{OLD_TAG}{dead}")),
    )
    .unwrap();
    fs::rename(dir.join("cert.pem.new"), dir.join("cert.pem")).unwrap();
    fs::write(dir.join(format!(".stray{TMP_TAG}{dead}")), "junk").unwrap();
    let journal = format!(
        "{JOURNAL_HEADER}\nR\t.cert.pem{TMP_TAG}{dead}\tcert.pem\nB\t.cert.pem{OLD_TAG}{dead}\tcert.pem\nR\t.chain.pem{TMP_TAG}{dead}\tchain.pem\n"
    );
    fs::write(dir.join(JOURNAL), journal).unwrap();

    let recovery = recover(dir).unwrap();
    assert_eq!(recovery.finished, ["chain.pem"]);
    assert_eq!(recovery.removed, 1, "the stray temporary file");
    assert_eq!(read(dir, "cert.pem"), "cert 2\n");
    assert_eq!(read(dir, "chain.pem"), "chain 2\n");
    assert_eq!(
        fs::read_to_string(prev_path(dir, "cert.pem")).unwrap(),
        "cert 1\n",
        "the replaced file becomes the previous generation"
    );
    assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));
}

#[test]
fn the_previous_generation_is_kept_and_restored_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_files(dir, &set("1"), &keep()).unwrap();
    fs::set_permissions(dir.join("privkey.pem"), Permissions::from_mode(0o640)).unwrap();
    write_files(dir, &set("2"), &keep()).unwrap();
    assert_eq!(read(dir, "cert.pem"), "cert 2\n");
    assert_eq!(
        fs::read_to_string(prev_path(dir, "cert.pem")).unwrap(),
        "cert 1\n"
    );
    let names = ["cert.pem", "chain.pem", "privkey.pem"];
    assert_eq!(restore_previous(dir, &names).unwrap(), 3);
    assert_eq!(read(dir, "cert.pem"), "cert 1\n");
    assert_eq!(read(dir, "privkey.pem"), "key 1\n");
    assert_eq!(
        mode(&dir.join("privkey.pem")),
        0o640,
        "restored with its own mode"
    );
    assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));
}

#[test]
fn an_identical_set_is_left_alone_with_its_previous_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_files(dir, &set("1"), &keep()).unwrap();
    write_files(dir, &set("2"), &keep()).unwrap();
    let report = write_files(dir, &set("2"), &keep()).unwrap();
    assert!(!report.changed);
    assert_eq!(
        fs::read_to_string(prev_path(dir, "cert.pem")).unwrap(),
        "cert 1\n"
    );
}

#[test]
fn bad_file_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["../x", "a/b", ".certfleet-journal", "", ".."] {
        let files = vec![PlannedFile::new(name, "x", false)];
        let err = write_files(tmp.path(), &files, &WriteOptions::default()).unwrap_err();
        assert!(matches!(err, DeployError::FileName(_)), "{name}: {err}");
    }
}

/// HTTP-01 responses of orders running at once land in one webroot side by side: no writer
/// touches another's temporary file (field report: "renaming into place ...: No such file").
#[test]
fn single_files_written_at_once_into_one_directory_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                for j in 0..25 {
                    let path = dir.join(format!("token-{i}-{j}"));
                    write_one(&path, format!("{i}.{j}").as_bytes(), 0o644).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 200, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("token-")), "{names:?}");
    assert_eq!(fs::read(dir.join("token-3-7")).unwrap(), b"3.7");
    let mode = fs::metadata(dir.join("token-0-0"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644);

    // A link at the file's place is refused and left alone.
    std::os::unix::fs::symlink("/etc/hostname", dir.join("planted")).unwrap();
    let err = write_one(&dir.join("planted"), b"x", 0o644).unwrap_err();
    assert!(matches!(err, DeployError::Symlink { .. }), "{err}");
    assert_eq!(
        fs::read_link(dir.join("planted")).unwrap(),
        Path::new("/etc/hostname")
    );
}
