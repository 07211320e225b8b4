//! The [`DeployTarget`] plug-in trait and the file target.
//!
//! A target puts a certificate's [`Bundle`] where a server reads it, all at once, and can put
//! the previous generation back. Checking, reloading and proving the result by handshake are
//! done around it by the caller (the agent), the same way for every target.
//!
//! **Adding a target** (Kubernetes Secret, S3 object): a new module in this crate with a type
//! implementing [`DeployTarget`], a variant in the agent's `[[targets]]` config enum, and a
//! test against the real service (or, where it cannot run here, its documented contract).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use certfleet_core::Secret;
use serde::Deserialize;

use crate::DeployError;
use crate::files::{self, PlannedFile, WriteOptions, WriteReport};
use crate::perms::Ownership;

/// The files of one version of a certificate, as the API's bundle route returns them.
#[derive(Clone)]
pub struct Bundle {
    /// Certificate name.
    pub name: String,
    /// DNS names.
    pub domains: Vec<String>,
    /// Version number.
    pub version: u32,
    /// Serial, lowercase hex.
    pub serial: String,
    /// The leaf, PEM.
    pub cert_pem: String,
    /// The intermediates, PEM (may be empty).
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: Secret,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// What goes into a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The leaf certificate.
    Cert,
    /// The intermediates.
    Chain,
    /// The private key.
    Key,
}

/// One file a target writes: its name and what it holds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Plain file name.
    pub name: String,
    /// Its parts, concatenated.
    pub parts: Vec<Part>,
    /// A mode for this file only.
    pub mode: Option<u32>,
}

impl FileSpec {
    /// A file of `parts` with the default mode.
    pub fn new(name: &str, parts: &[Part]) -> Self {
        Self {
            name: name.to_string(),
            parts: parts.to_vec(),
            mode: None,
        }
    }

    /// Whether it holds the private key.
    pub fn secret(&self) -> bool {
        self.parts.contains(&Part::Key)
    }

    fn render(&self, bundle: &Bundle) -> Vec<u8> {
        let mut out = String::new();
        for part in &self.parts {
            let pem = match part {
                Part::Cert => bundle.cert_pem.as_str(),
                Part::Chain => bundle.chain_pem.as_str(),
                Part::Key => bundle.key_pem.expose(),
            };
            out.push_str(pem);
            if !pem.is_empty() && !pem.ends_with('\n') {
                out.push('\n');
            }
        }
        out.into_bytes()
    }
}

/// certbot's file names plus `bundle.pem` (fullchain + key, for servers that want one file).
pub fn default_files() -> Vec<FileSpec> {
    use Part::*;
    vec![
        FileSpec::new("cert.pem", &[Cert]),
        FileSpec::new("chain.pem", &[Chain]),
        FileSpec::new("fullchain.pem", &[Cert, Chain]),
        FileSpec::new("privkey.pem", &[Key]),
        FileSpec::new("bundle.pem", &[Cert, Chain, Key]),
    ]
}

/// What a deployment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// Where (a directory for the file target).
    pub location: String,
    /// The directory, for hooks (`CERTFLEET_DIR`, `RENEWED_LINEAGE`).
    pub dir: Option<PathBuf>,
    /// Whether anything changed (false when the files were already in place).
    pub changed: bool,
    /// The files, when the target writes files.
    pub files: Option<WriteReport>,
}

/// Somewhere a certificate is deployed to. Held as `Arc<dyn DeployTarget>`, built once from
/// configuration.
#[async_trait]
pub trait DeployTarget: Send + Sync {
    /// Where `certificate` goes, for messages (`/etc/ssl/www`).
    fn location(&self, certificate: &str) -> String;

    /// Put `bundle` in place, all or nothing, keeping what it replaces for [`rollback`].
    ///
    /// [`rollback`]: DeployTarget::rollback
    async fn deploy(&self, bundle: &Bundle) -> Result<Deployment, DeployError>;

    /// Put back what the last [`deploy`](DeployTarget::deploy) of `certificate` replaced;
    /// false if there is nothing to put back.
    async fn rollback(&self, certificate: &str) -> Result<bool, DeployError>;
}

/// Files in a directory per certificate.
#[derive(Debug, Clone)]
pub struct FileTarget {
    /// Directory; `{name}` is replaced by the certificate name.
    pub dir: String,
    /// The files.
    pub files: Vec<FileSpec>,
    /// Explicit owner, group and modes.
    pub ownership: Ownership,
    /// Keep the previous generation for rollback.
    pub keep_previous: bool,
}

impl FileTarget {
    /// The default files in `dir`, keeping the previous generation.
    pub fn new(dir: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            files: default_files(),
            ownership: Ownership::default(),
            keep_previous: true,
        }
    }

    /// The directory for `certificate` (a validated certificate name, safe in a path).
    pub fn dir_for(&self, certificate: &str) -> PathBuf {
        PathBuf::from(self.dir.replace("{name}", certificate))
    }

    /// Write `bundle` now (blocking I/O; [`DeployTarget::deploy`] runs this off the runtime).
    pub fn write(&self, bundle: &Bundle) -> Result<WriteReport, DeployError> {
        self.write_into(&self.dir_for(&bundle.name), bundle)
    }

    /// Write `bundle`'s files into `dir` exactly (no `{name}` substitution; `cert export`).
    pub fn write_into(&self, dir: &Path, bundle: &Bundle) -> Result<WriteReport, DeployError> {
        let planned: Vec<PlannedFile> = self
            .files
            .iter()
            .map(|spec| {
                let mut file = PlannedFile::new(&spec.name, spec.render(bundle), spec.secret());
                file.mode = spec.mode;
                file
            })
            .collect();
        let options = WriteOptions {
            ownership: self.ownership,
            keep_previous: self.keep_previous,
        };
        files::write_files(dir, &planned, &options)
    }

    fn restore(&self, certificate: &str) -> Result<bool, DeployError> {
        let names: Vec<&str> = self.files.iter().map(|f| f.name.as_str()).collect();
        Ok(files::restore_previous(&self.dir_for(certificate), &names)? > 0)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeployError> + Send + 'static,
) -> Result<T, DeployError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DeployError::Task(e.to_string()))?
}

#[async_trait]
impl DeployTarget for FileTarget {
    fn location(&self, certificate: &str) -> String {
        self.dir_for(certificate).display().to_string()
    }

    async fn deploy(&self, bundle: &Bundle) -> Result<Deployment, DeployError> {
        let (this, owned) = (self.clone(), bundle.clone());
        let report = blocking(move || this.write(&owned)).await?;
        let dir = self.dir_for(&bundle.name);
        Ok(Deployment {
            location: dir.display().to_string(),
            dir: Some(dir),
            changed: report.changed,
            files: Some(report),
        })
    }

    async fn rollback(&self, certificate: &str) -> Result<bool, DeployError> {
        let (this, name) = (self.clone(), certificate.to_string());
        blocking(move || this.restore(&name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(tag: &str) -> Bundle {
        Bundle {
            name: "www".into(),
            domains: vec!["www.example.test".into()],
            version: 1,
            serial: "0a".into(),
            cert_pem: format!("CERT {tag}\n"),
            chain_pem: format!("CHAIN {tag}"),
            key_pem: Secret::new(format!("KEY {tag}\n")),
        }
    }

    #[tokio::test]
    async fn custom_files_and_rollback() {
        let tmp = tempfile::tempdir().unwrap();
        let mut target = FileTarget::new(format!("{}/{{name}}", tmp.path().display()));
        target.files = vec![
            FileSpec::new("fullbundle.pem", &[Part::Cert, Part::Chain, Part::Key]),
            FileSpec::new("cert.pem", &[Part::Cert]),
        ];
        let done = target.deploy(&bundle("1")).await.unwrap();
        assert!(done.changed);
        let dir = tmp.path().join("www");
        assert_eq!(
            std::fs::read_to_string(dir.join("fullbundle.pem")).unwrap(),
            "CERT 1\nCHAIN 1\nKEY 1\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("fullbundle.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "a file with the key is private");
        target.deploy(&bundle("2")).await.unwrap();
        assert!(target.rollback("www").await.unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.join("cert.pem")).unwrap(),
            "CERT 1\n"
        );
    }
}
