//! `certfleet cert import` and `certfleet cert manage`: manual certificates.

use std::path::{Path, PathBuf};

use certfleet_server::views::{CertificateView, ImportCertificate, ManageCertificate};

use crate::client::Api;
use crate::{CliError, print_json};

/// The files of `cert import`, as given.
pub struct ImportFiles {
    /// `--cert`
    pub cert: PathBuf,
    /// `--key`
    pub key: PathBuf,
    /// `--chain`
    pub chain: Option<PathBuf>,
    /// `--ca-file`
    pub ca_file: Option<PathBuf>,
}

impl ImportFiles {
    /// Read every file into an import request (nothing is sent when one cannot be read).
    pub fn read(
        &self,
        allow_expired: bool,
        issuer: Option<String>,
    ) -> Result<ImportCertificate, CliError> {
        let optional = |p: &Option<PathBuf>, flag: &str| match p {
            Some(p) => read_pem(flag, p),
            None => Ok(String::new()),
        };
        Ok(ImportCertificate {
            cert_pem: read_pem("--cert", &self.cert)?,
            key_pem: read_pem("--key", &self.key)?,
            chain_pem: optional(&self.chain, "--chain")?,
            ca_pem: optional(&self.ca_file, "--ca-file")?,
            allow_expired,
            issuer,
        })
    }

    /// Name the file a refusal is about, as the user typed it: `--key /tmp/k.pem: ...`.
    pub fn relabel(&self, e: CliError) -> CliError {
        let chain_label = match &self.chain {
            Some(p) => label("--chain", p),
            None => format!("the chain of {}", label("--cert", &self.cert)),
        };
        let ca_label = match &self.ca_file {
            Some(p) => label("--ca-file", p),
            None => "--ca-file".to_string(),
        };
        e.relabel("cert_pem", &label("--cert", &self.cert))
            .relabel("key_pem", &label("--key", &self.key))
            .relabel("chain_pem", &chain_label)
            .relabel("ca_pem", &ca_label)
    }
}

fn label(flag: &str, path: &Path) -> String {
    format!("{flag} {}", path.display())
}

/// Read a PEM file; binary (DER) content gets a hint instead of a decoding error.
pub fn read_pem(flag: &str, path: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::failure(format!("{}: cannot read it: {e}", label(flag, path))))?;
    String::from_utf8(bytes).map_err(|_| {
        CliError::failure(format!(
            "{}: holds binary data, not PEM text; convert DER with `openssl x509 -inform der` \
             (certificates) or `openssl pkey -inform der` (keys)",
            label(flag, path)
        ))
        .kind("invalid-input")
    })
}

/// `cert import`.
pub async fn import(
    api: &Api,
    name: &str,
    files: &ImportFiles,
    allow_expired: bool,
    issuer: Option<String>,
    json: bool,
) -> Result<(), CliError> {
    let body = files.read(allow_expired, issuer)?;
    let path = format!("{}/import", crate::cert::cert_path(name));
    let view: CertificateView = api
        .post(&path, Some(&body))
        .await
        .map_err(|e| files.relabel(e))?;
    if json {
        return print_json(&view);
    }
    let renew = if view.auto_renew {
        format!("renewed over ACME by issuer {}", view.issuer)
    } else {
        format!(
            "manual: not renewed by certfleet (certfleet cert manage {name} --issuer ISSUER changes that)"
        )
    };
    eprintln!(
        "{name}: imported version {} for {}, valid until {} ({} days left); {renew}",
        view.version.unwrap_or_default(),
        view.domains.join(", "),
        view.not_after.as_deref().unwrap_or("?"),
        view.days_left.unwrap_or_default()
    );
    Ok(())
}

/// `cert manage`.
pub async fn manage(api: &Api, name: &str, issuer: String, json: bool) -> Result<(), CliError> {
    let path = format!("{}/manage", crate::cert::cert_path(name));
    let view: CertificateView = api.post(&path, Some(&ManageCertificate { issuer })).await?;
    if json {
        return print_json(&view);
    }
    eprintln!(
        "{name}: now renewed over ACME by issuer {}; the imported version stays current until \
         the next renewal (certfleet cert renew {name} renews now)",
        view.issuer
    );
    Ok(())
}
