//! `certfleet cert export`: certbot's file names plus `bundle.pem`, written all at once through
//! the deploy crate's file target (the same writer the agent uses).

use std::path::Path;

use certfleet_core::Secret;
use certfleet_deploy::files::WriteReport;
use certfleet_deploy::perms::{self, Ownership};
use certfleet_deploy::{Bundle, DeployError, FileTarget};
use certfleet_server::views::BundleView;

use crate::CliError;

/// `--owner`, `--group`, `--mode` and `--key-mode` as typed.
#[derive(Debug, Default)]
pub struct OwnershipFlags {
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<String>,
    pub key_mode: Option<String>,
}

impl OwnershipFlags {
    /// Resolve names and parse modes; errors name the flag.
    pub fn resolve(&self) -> Result<Ownership, CliError> {
        fn one<T>(
            flag: &str,
            value: &Option<String>,
            parse: fn(&str) -> Result<T, DeployError>,
        ) -> Result<Option<T>, CliError> {
            value
                .as_deref()
                .map(parse)
                .transpose()
                .map_err(|e| CliError::failure(format!("{flag}: {e}")))
        }
        Ok(Ownership {
            owner: one("--owner", &self.owner, perms::resolve_user)?,
            group: one("--group", &self.group, perms::resolve_group)?,
            mode: one("--mode", &self.mode, perms::parse_mode)?,
            key_mode: one("--key-mode", &self.key_mode, perms::parse_key_mode)?,
        })
    }
}

/// Write `cert.pem`, `chain.pem`, `fullchain.pem`, `privkey.pem` and `bundle.pem` into `dir`,
/// all or nothing.
pub fn write_bundle(
    dir: &Path,
    bundle: &BundleView,
    ownership: Ownership,
) -> Result<WriteReport, CliError> {
    let mut target = FileTarget::new("");
    target.ownership = ownership;
    target.keep_previous = false;
    let bundle = Bundle {
        name: bundle.name.clone(),
        domains: bundle.domains.clone(),
        version: bundle.version,
        serial: bundle.serial.clone(),
        cert_pem: bundle.cert_pem.clone(),
        chain_pem: bundle.chain_pem.clone(),
        key_pem: Secret::new(bundle.key_pem.clone()),
    };
    target.write_into(dir, &bundle).map_err(|e| match e {
        DeployError::NotADirectory { .. } => CliError::failure(format!("--dir: {e}")),
        other => CliError::failure(format!("exporting into {}: {other}", dir.display())),
    })
}
