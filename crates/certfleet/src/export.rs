//! `certfleet cert export`: certbot's file names plus `bundle.pem`, written atomically.

use std::path::Path;

use certfleet_server::fsutil::{sync_dir, write_atomic};
use certfleet_server::views::BundleView;

/// Mode of files without secrets.
const PUBLIC_MODE: u32 = 0o644;
/// Mode of files with the private key.
const PRIVATE_MODE: u32 = 0o600;

/// Write `cert.pem`, `chain.pem`, `fullchain.pem`, `privkey.pem` and `bundle.pem` into `dir`.
pub fn write_bundle(dir: &Path, bundle: &BundleView) -> std::io::Result<Vec<&'static str>> {
    std::fs::create_dir_all(dir)?;
    let bundle_pem = format!("{}{}", bundle.fullchain_pem, bundle.key_pem);
    let files: [(&'static str, &str, u32); 5] = [
        ("cert.pem", &bundle.cert_pem, PUBLIC_MODE),
        ("chain.pem", &bundle.chain_pem, PUBLIC_MODE),
        ("fullchain.pem", &bundle.fullchain_pem, PUBLIC_MODE),
        ("privkey.pem", &bundle.key_pem, PRIVATE_MODE),
        ("bundle.pem", &bundle_pem, PRIVATE_MODE),
    ];
    for (name, content, mode) in files {
        write_atomic(&dir.join(name), content.as_bytes(), mode)?;
    }
    sync_dir(dir)?;
    Ok(files.iter().map(|f| f.0).collect())
}
