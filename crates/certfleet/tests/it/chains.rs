//! Alternate chains (RFC 8555 §7.4.2): `preferred_chain` picks the one leading to the
//! named root, against Pebble offering two root hierarchies.

use std::sync::Arc;

use certfleet_acme::inspect::ParsedChain;
use certfleet_testkit::{Pebble, PebbleOptions};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::harness::Server;

/// Whether `fullchain` verifies for `name` against `root_pem` alone.
pub fn verifies_against(root_pem: &str, fullchain: &str, name: &str) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(fullchain.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    verifier
        .verify_server_cert(&certs[0], &certs[1..], &server_name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

/// Panic unless `fullchain` verifies for `name` against `root_pem`.
pub fn verify_against(root_pem: &str, fullchain: &str, name: &str) {
    if let Err(e) = verifies_against(root_pem, fullchain, name) {
        panic!("chain does not verify for {name}: {e}");
    }
}

/// The subject DN and common name of a root certificate.
fn root_names(root_pem: &str) -> (String, String) {
    let root = ParsedChain::parse(root_pem).unwrap();
    let info = root.leaf();
    (
        info.subject.clone(),
        info.issuer_cn.clone().expect("root CN"),
    )
}

fn fullchain(server: &Server, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    server.cli_ok(&[
        "cert",
        "export",
        name,
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    std::fs::read_to_string(dir.path().join("fullchain.pem")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn preferred_chain_picks_the_alternate_root() {
    let pebble = Pebble::start(PebbleOptions {
        alternate_roots: 1,
        chain_length: Some(3),
        ..PebbleOptions::fast()
    })
    .await;
    let (root0, root1) = (pebble.root_pem_at(0).await, pebble.root_pem_at(1).await);
    let (dn0, _) = root_names(&root0);
    let (dn1, cn1) = root_names(&root1);
    assert_ne!(dn0, dn1, "Pebble offers two roots");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("certfleet.toml");
    std::fs::write(
        &config,
        format!(
            "[issuers.fallback]\ndirectory = \"{}\"\nca_roots = [\"{}\"]\npreferred_chain = \"No Such Root CA\"\n",
            pebble.directory_url(),
            pebble.ca_cert_path().display()
        ),
    )
    .unwrap();
    let server = Server::start_next_to(
        &pebble,
        &dir.path().join("data"),
        &[
            "--preferred-chain",
            &cn1,
            "--config",
            config.to_str().unwrap(),
        ],
    );

    // The default issuer prefers root 1: the alternate chain is stored.
    server.issue("alt", "alt.example.test");
    let full = fullchain(&server, "alt");
    let length = ParsedChain::parse(&full).unwrap().certs.len();
    assert!(length > 2, "a longer chain than Pebble's default: {length}");
    verify_against(&root1, &full, "alt.example.test");
    assert!(
        verifies_against(&root0, &full, "alt.example.test").is_err(),
        "the stored chain leads to root 1 only"
    );
    let show = server.cli_ok(&["cert", "show", "alt"]);
    assert!(show.contains(&format!("Root:        {dn1}")), "{show}");
    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "alt", "--json"])).unwrap();
    assert_eq!(detail["versions"][0]["root"], dn1.as_str());

    // An issuer preferring a root the CA does not offer keeps the default chain.
    server.cli_ok(&[
        "cert",
        "add",
        "plain",
        "--domain",
        "plain.example.test",
        "--issuer",
        "fallback",
        "--wait",
    ]);
    let full = fullchain(&server, "plain");
    verify_against(&root0, &full, "plain.example.test");
    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "plain", "--json"])).unwrap();
    assert_eq!(detail["versions"][0]["root"], dn0.as_str());
    let issuers = server.issuers();
    let fallback = issuers.iter().find(|i| i["name"] == "fallback").unwrap();
    assert_eq!(fallback["preferred_chain"], "No Such Root CA");
}
