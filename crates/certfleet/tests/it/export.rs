//! `cert export` keeps what the operator set and is all or nothing (issue 5, items 5 and 9).

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};

use certfleet_testkit::PebbleOptions;

use crate::harness::{Server, bin, pebble_and_server, stderr};

/// A real group to hand key files to, as a web server's would be (Debian's `www-data`).
const WEB_GROUP: &str = "www-data";
const WEB_GID: u32 = 33;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn gid(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().gid()
}

fn export(server: &Server, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["cert", "export", "www", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    server.cli(&args)
}

fn export_ok(server: &Server, dir: &Path, extra: &[&str]) -> String {
    let out = export(server, dir, extra);
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    stderr(&out)
}

/// Run the CLI through `sh -c 'umask U; exec certfleet ...'`.
fn export_with_umask(server: &Server, umask: &str, dir: &Path) {
    let script =
        format!("umask {umask}; exec \"$0\" --data-dir \"$1\" cert export www --dir \"$2\"");
    let out = Command::new("sh")
        .args(["-c", &script, bin()])
        .arg(&server.data_dir)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "umask {umask}: {}", stderr(&out));
}

fn serial_of(dir: &Path) -> String {
    let pem = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    certfleet_acme::inspect::ParsedChain::parse(&pem)
        .unwrap()
        .leaf()
        .serial
        .clone()
}

fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn export_keeps_the_group_and_mode_the_operator_set_across_a_renewal() {
    let (_pebble, tmp, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let dir = tmp.path().join("export");
    export_ok(&server, &dir, &[]);
    let key = dir.join("privkey.pem");
    let cert = dir.join("fullchain.pem");
    // What an operator does so the web server can read its key.
    std::os::unix::fs::chown(&key, None, Some(WEB_GID)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&cert, None, Some(WEB_GID)).unwrap();
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o640)).unwrap();
    let first = serial_of(&dir);

    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    export_ok(&server, &dir, &[]);
    assert_ne!(serial_of(&dir), first, "the renewed version was written");
    assert_eq!(
        (gid(&key), mode(&key)),
        (WEB_GID, 0o640),
        "key keeps group and g+r"
    );
    assert_eq!(
        (gid(&cert), mode(&cert)),
        (WEB_GID, 0o640),
        "fullchain keeps all it had"
    );
    assert_eq!(
        mode(&dir.join("bundle.pem")),
        0o600,
        "untouched files keep defaults"
    );
    assert_eq!(gid(&dir.join("bundle.pem")), 0);

    // World bits on an old key are never carried over; its group-read bit is.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    export_ok(&server, &dir, &[]);
    assert_eq!((gid(&key), mode(&key)), (WEB_GID, 0o640));
    assert!(hidden(&dir).is_empty(), "{:?}", hidden(&dir));
}

#[tokio::test(flavor = "multi_thread")]
async fn export_directories_get_explicit_modes_whatever_the_umask() {
    let (_pebble, tmp, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let open = tmp.path().join("umask000/a/www");
    export_with_umask(&server, "000", &open);
    assert_eq!(mode(&open), 0o755, "not 0777 under umask 000");
    assert_eq!(mode(open.parent().unwrap()), 0o755, "created parents too");
    assert_eq!(mode(&open.join("cert.pem")), 0o644);
    assert_eq!(mode(&open.join("privkey.pem")), 0o600);
    let closed = tmp.path().join("umask077/www");
    export_with_umask(&server, "077", &closed);
    assert_eq!(
        mode(&closed),
        0o755,
        "readable by the web server under umask 077"
    );
    assert_eq!(mode(&closed.join("fullchain.pem")), 0o644);
}

#[tokio::test(flavor = "multi_thread")]
async fn export_group_and_key_mode_flags_set_them_explicitly() {
    let (_pebble, tmp, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let dir = tmp.path().join("grouped");
    let said = export_ok(&server, &dir, &["--group", WEB_GROUP]);
    assert!(said.contains("privkey.pem (0640)"), "{said}");
    let key = dir.join("privkey.pem");
    assert_eq!((gid(&key), mode(&key)), (WEB_GID, 0o640));
    assert_eq!(gid(&dir.join("cert.pem")), WEB_GID);
    assert_eq!(
        gid(&dir),
        WEB_GID,
        "the directory it created belongs to the group"
    );

    export_ok(&server, &dir, &["--key-mode", "0600"]);
    assert_eq!(
        (gid(&key), mode(&key)),
        (WEB_GID, 0o600),
        "group kept, mode set"
    );

    let out = export(&server, &dir, &["--key-mode", "0644"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("--key-mode") && err.contains("others"),
        "{err}"
    );
    let out = export(&server, &dir, &["--group", "no-such-group-x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--group: unknown group \"no-such-group-x\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(mode(&key), 0o600, "refused flags change nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn export_is_all_or_nothing_and_names_the_file_that_failed() {
    let (_pebble, tmp, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let dir = tmp.path().join("partial");
    export_ok(&server, &dir, &[]);
    let first = serial_of(&dir);
    let before: Vec<String> = ["cert.pem", "chain.pem", "fullchain.pem", "bundle.pem"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    std::fs::remove_file(dir.join("privkey.pem")).unwrap();
    std::fs::create_dir(dir.join("privkey.pem")).unwrap();

    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let out = export(&server, &dir, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&dir.join("privkey.pem").display().to_string()) && err.contains("a directory"),
        "the error names the file: {err}"
    );
    assert_eq!(
        serial_of(&dir),
        first,
        "no new certificate beside an old key"
    );
    let after: Vec<String> = ["cert.pem", "chain.pem", "fullchain.pem", "bundle.pem"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    assert_eq!(before, after, "nothing was replaced");
    assert!(
        hidden(&dir).is_empty(),
        "temporary files left: {:?}",
        hidden(&dir)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_into_a_regular_file_or_through_a_planted_symlink_is_refused() {
    let (_pebble, tmp, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = export(&server, &file, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "error: --dir: {} is a regular file, not a directory",
            file.display()
        )
    );

    let dir = tmp.path().join("linked");
    export_ok(&server, &dir, &[]);
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::remove_file(dir.join("privkey.pem")).unwrap();
    symlink(&victim, dir.join("privkey.pem")).unwrap();
    let out = export(&server, &dir, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}
