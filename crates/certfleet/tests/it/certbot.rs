//! `certfleet import-certbot` against a tree the real certbot wrote from Pebble.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use certfleet_testkit::{Pebble, PebbleOptions, certbot_certonly};

use crate::harness::{Server, stderr};

/// Every file and symlink under `root`: path → contents (or link target).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(path, target.to_string_lossy().as_bytes().to_vec());
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn compact(pem: &str) -> String {
    pem.chars().filter(|c| !c.is_whitespace()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn certbot_lineages_are_imported_and_one_renews_while_the_other_stays_byte_identical() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    certbot_certonly(
        &pebble,
        dir.path(),
        &["a.example.test", "www.a.example.test"],
    )
    .await;
    certbot_certonly(&pebble, dir.path(), &["b.example.test"]).await;
    let le = dir.path().join("letsencrypt");
    // A lineage whose files are gone: reported and skipped, the rest imported.
    std::fs::write(
        le.join("renewal/broken.example.test.conf"),
        format!(
            "cert = {0}/live/broken.example.test/cert.pem\nprivkey = {0}/live/broken.example.test/privkey.pem\n\
             [renewalparams]\nserver = {1}\n",
            le.display(),
            pebble.directory_url()
        ),
    )
    .unwrap();
    // A lineage from a CA certfleet has no issuer for (b's files, another server): manual.
    let other = le.join("live/c.example.test");
    std::fs::create_dir_all(&other).unwrap();
    for file in ["cert.pem", "chain.pem", "privkey.pem"] {
        std::fs::copy(le.join("live/b.example.test").join(file), other.join(file)).unwrap();
    }
    std::fs::write(
        le.join("renewal/c.example.test.conf"),
        "version = 2.1.0\n[renewalparams]\nserver = https://acme.other-ca.test/directory\n",
    )
    .unwrap();
    let root = dir.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.root_pem().await).unwrap();
    let before = snapshot(&le);

    let server = Server::start(&pebble, &dir.path().join("data"));
    let out = server.cli(&[
        "import-certbot",
        "--dir",
        le.to_str().unwrap(),
        "--ca-file",
        root.to_str().unwrap(),
    ]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "one lineage skipped: {report}{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("1 of 4 lineage(s) skipped"),
        "{}",
        stderr(&out)
    );
    let line = |lineage: &str| {
        report
            .lines()
            .find(|l| l.starts_with(lineage))
            .unwrap_or_else(|| panic!("{lineage} missing from {report}"))
            .to_string()
    };
    assert!(
        line("a.example.test").contains("imported")
            && line("a.example.test").contains("renewed by issuer default"),
        "{report}"
    );
    assert!(line("b.example.test").contains("imported"), "{report}");
    let c = line("c.example.test");
    assert!(
        c.contains("imported")
            && c.contains("manual: its server https://acme.other-ca.test/directory matches no configured issuer"),
        "{report}"
    );
    let broken = line("broken.example.test");
    assert!(
        broken.contains("skipped")
            && broken.contains("cannot read the certificate")
            && broken.contains("live/broken.example.test/cert.pem"),
        "{report}"
    );

    let list = server.list();
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(
        (list[2]["source"].as_str(), list[2]["auto_renew"].as_bool()),
        (Some("manual"), Some(false))
    );
    let a = &list[0];
    assert_eq!(a["name"], "a.example.test");
    assert_eq!(
        a["domains"],
        serde_json::json!(["a.example.test", "www.a.example.test"])
    );
    assert_eq!(
        (a["source"].as_str(), a["issuer"].as_str()),
        (Some("acme"), Some("default"))
    );
    assert_eq!(
        (a["status"].as_str(), a["version"].as_u64()),
        (Some("valid"), Some(1))
    );
    assert_eq!(a["key"], "ecdsa-p256");
    // Version 1 is certbot's current files, key included.
    let (status, bundle) =
        server.api_request("GET", "/api/v1/certificates/a.example.test/bundle", None);
    assert_eq!(status, 200);
    let bundle: serde_json::Value = serde_json::from_str(&bundle).unwrap();
    let live = le.join("live/a.example.test");
    let read = |f: &str| std::fs::read_to_string(live.join(f)).unwrap();
    assert_eq!(
        compact(bundle["cert_pem"].as_str().unwrap()),
        compact(&read("cert.pem"))
    );
    assert_eq!(
        compact(bundle["chain_pem"].as_str().unwrap()),
        compact(&read("chain.pem"))
    );
    assert_eq!(
        compact(bundle["key_pem"].as_str().unwrap()),
        compact(&read("privkey.pem"))
    );

    server.cli_ok(&["cert", "renew", "a.example.test", "--wait"]);
    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "a.example.test", "--json"]))
            .unwrap();
    assert_eq!(detail["version"], 2, "renewed from the CA by certfleet");
    assert_ne!(
        detail["versions"][1]["serial"],
        detail["versions"][0]["serial"]
    );

    let after = snapshot(&le);
    let b_files = |s: &BTreeMap<PathBuf, Vec<u8>>| -> Vec<(PathBuf, Vec<u8>)> {
        s.iter()
            .filter(|(p, _)| p.to_string_lossy().contains("b.example.test"))
            .map(|(p, c)| (p.clone(), c.clone()))
            .collect()
    };
    assert!(
        b_files(&before).len() >= 9,
        "lineage b: live, archive and renewal files"
    );
    assert_eq!(
        b_files(&after),
        b_files(&before),
        "lineage b is byte-identical"
    );
    assert_eq!(
        after, before,
        "certfleet never writes into the certbot tree"
    );

    let missing = dir.path().join("no-letsencrypt");
    let out = server.cli(&["import-certbot", "--dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "--dir {}: no certbot installation there (neither renewal/ nor live/ exists)",
            missing.display()
        )),
        "{}",
        stderr(&out)
    );

    // Running it again changes nothing.
    let out = server.cli(&[
        "import-certbot",
        "--dir",
        le.to_str().unwrap(),
        "--ca-file",
        root.to_str().unwrap(),
        "--json",
    ]);
    let outcomes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let results: Vec<&str> = outcomes
        .iter()
        .map(|o| o["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["exists", "exists", "skipped", "exists"]);
    assert_eq!(server.list()[0]["version"], 2);
}
