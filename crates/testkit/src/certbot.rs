//! [`certbot_certonly`]: the real `certbot` (Debian package) issuing a lineage from a test
//! [`Pebble`] with its standalone HTTP-01 server on Pebble's httpPort, everything (config,
//! work and log directories) under a directory of the test's, traffic on 127.0.0.1 only.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::pebble::Pebble;
use crate::process::require_program;

/// Bound on one certbot run.
const CERTBOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Run `certbot certonly --standalone` for `domains` (the first names the lineage) with its
/// configuration in `root/letsencrypt`; panics with certbot's output if it fails. certbot's
/// HTTP-01 listener takes Pebble's httpPort while it runs, so nothing else may hold it then.
pub async fn certbot_certonly(pebble: &Pebble, root: &Path, domains: &[&str]) {
    let certbot = require_program(
        "certbot",
        "apt-get install -y certbot (or run scripts/testbed)",
    );
    let mut cmd = tokio::process::Command::new(certbot);
    cmd.args(["certonly", "--standalone", "-n", "--agree-tos"])
        .arg("--register-unsafely-without-email")
        .args(["--server", &pebble.directory_url()])
        .args(["--http-01-address", "127.0.0.1"])
        .args(["--http-01-port", &pebble.http01_port().to_string()])
        .arg("--config-dir")
        .arg(root.join("letsencrypt"))
        .arg("--work-dir")
        .arg(root.join("certbot-work"))
        .arg("--logs-dir")
        .arg(root.join("certbot-logs"))
        .env("REQUESTS_CA_BUNDLE", pebble.ca_cert_path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for domain in domains {
        cmd.args(["-d", domain]);
    }
    let output = tokio::time::timeout(CERTBOT_TIMEOUT, cmd.output())
        .await
        .expect("certbot did not finish in time")
        .expect("run certbot");
    assert!(
        output.status.success(),
        "certbot failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
