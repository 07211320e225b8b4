//! `certfleet cert revoke`: revoke a version at the CA (RFC 8555 §7.6), optionally waiting
//! for its replacement.

use certfleet_server::revocation::{Replacement, RevocationView, RevokeCertificate};
use certfleet_server::views::CertificateDetail;

use crate::client::Api;
use crate::{CliError, print_json};

/// The flags of `cert revoke`.
#[derive(Debug)]
pub struct RevokeArgs {
    pub name: String,
    pub version: Option<u32>,
    pub reason: Option<String>,
    pub reissue: bool,
    pub issuer: Option<String>,
    pub yes: bool,
    pub timeout: Option<u64>,
}

/// Revoke; with `--reissue`, wait for the new version and report it.
pub async fn run(api: &Api, args: RevokeArgs, json: bool) -> Result<(), CliError> {
    let name = args.name.as_str();
    let path = crate::cert::cert_path(name);
    let detail: CertificateDetail = api.get(&path).await?;
    if !args.yes && !confirm(&detail, args.version)? {
        return Err(CliError::failure(format!("{name}: not revoked")).kind("cancelled"));
    }
    // The server names `issuer` also for the certificate's own issuer; only a flag the user
    // gave is named as a flag.
    let issuer_given = args.issuer.is_some();
    let body = RevokeCertificate {
        version: args.version,
        reason: args.reason,
        reissue: args.reissue,
        issuer: args.issuer,
    };
    let mut view: RevocationView = api
        .post(&format!("{path}/revoke"), Some(&body))
        .await
        .map_err(|e| {
            let e = if issuer_given {
                e.relabel("issuer", "--issuer")
            } else {
                e
            };
            e.relabel("version", "--version")
        })?;
    if !json {
        let already = if view.already_revoked {
            " (the CA had already revoked it)"
        } else {
            ""
        };
        eprintln!(
            "{name}: version {} (serial {}) revoked at the CA, reason {}{already}",
            view.version, view.serial, view.reason
        );
    }
    match view.replacement {
        Replacement::Started => {
            if !json {
                eprintln!("{name}: issuing the replacement");
            }
            // A failure counts only when the streak grows past what it was before the revoke.
            let before = (Some(view.version), detail.certificate.failure_streak);
            view.certificate =
                crate::cert::wait_settled(api, name, before, args.timeout, json).await?;
        }
        Replacement::Scheduled if !json => eprintln!(
            "{name}: certfleet replaces the revoked current version now (certfleet cert show \
             {name})"
        ),
        Replacement::NotBefore if !json => eprintln!(
            "{name}: the CA asked not to be sent orders before {}; the replacement is ordered then",
            view.retry_after.as_deref().unwrap_or("?")
        ),
        Replacement::None if !json && !view.certificate.auto_renew => {
            eprintln!("{name}: imported certificate; import or manage a replacement yourself")
        }
        _ => {}
    }
    if json {
        print_json(&view)?;
    }
    Ok(())
}

/// On a terminal, ask before revoking; elsewhere (scripts, pipes) refuse: revoking cannot be
/// undone, so it needs `--yes` there, as `cert rm` does.
fn confirm(detail: &CertificateDetail, version: Option<u32>) -> Result<bool, CliError> {
    let c = &detail.certificate;
    let seq = version.or(c.version).unwrap_or_default();
    let serial = detail
        .versions
        .iter()
        .find(|v| v.version == seq)
        .map(|v| v.serial.as_str())
        .unwrap_or("?");
    crate::prompt::confirm(
        &format!(
            "Revoke version {seq} (serial {serial}) of {} ({}) at the CA? Clients that check \
             revocation will refuse it; this cannot be undone. [y/N] ",
            c.name,
            c.domains.join(", ")
        ),
        &format!("{}: not revoked: revocation cannot be undone", c.name),
    )
}
