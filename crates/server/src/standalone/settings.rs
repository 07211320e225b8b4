//! What `certfleet run --once` does with a certificate on this machine: the fields of a
//! `[[certificates]]` entry beyond the declaration — `dir` (where the files go), `deploy`
//! (the command run after they changed), `deploy_timeout_secs`, and `owner`, `group`,
//! `mode`, `key_mode` as `certfleet cert export` takes them — validated into
//! [`LocalDeploy`] with errors that name the field.

use std::path::PathBuf;
use std::time::Duration;

use certfleet_deploy::perms::{self, Ownership};

use crate::config::{CertificateSection, ConfigErrors, Errors, err};

/// Default bound on the deploy command, seconds.
pub const DEFAULT_DEPLOY_TIMEOUT_SECS: u64 = 300;

/// Where a certificate's files go and what runs after they changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDeploy {
    /// The directory receiving `cert.pem`, `chain.pem`, `fullchain.pem`, `privkey.pem` and
    /// `bundle.pem` (absolute).
    pub dir: PathBuf,
    /// Program and arguments run after the files changed (never through a shell).
    pub command: Option<Vec<String>>,
    /// Bound on the command.
    pub timeout: Duration,
    /// Owner, group and modes of the files.
    pub ownership: Ownership,
}

/// Validate the deployment fields of certificate `i`; `None` when it has no `dir`.
pub(crate) fn resolve(
    i: usize,
    c: &CertificateSection,
) -> Result<Option<LocalDeploy>, ConfigErrors> {
    let field = |f: &str| format!("certificates[{i}].{f}");
    let mut errors = Errors::default();
    let Some(dir) = &c.dir else {
        let given: Vec<&str> = [
            ("deploy", c.deploy.is_some()),
            ("deploy_timeout_secs", c.deploy_timeout_secs.is_some()),
            ("owner", c.owner.is_some()),
            ("group", c.group.is_some()),
            ("mode", c.mode.is_some()),
            ("key_mode", c.key_mode.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, set)| set.then_some(f))
        .collect();
        for f in given {
            errors.check::<()>(Err(err(
                field(f),
                format!(
                    "needs {} (the directory the files are written to)",
                    field("dir")
                ),
            )));
        }
        return errors.finish(|| None);
    };
    if !dir.is_absolute() {
        errors.check::<()>(Err(err(
            field("dir"),
            format!(
                "{:?} is not an absolute path, such as /etc/ssl/{}",
                dir.display().to_string(),
                c.name
            ),
        )));
    } else if dir.exists() && !dir.is_dir() {
        errors.check::<()>(Err(err(
            field("dir"),
            format!("{} exists and is not a directory", dir.display()),
        )));
    }
    let command = match &c.deploy {
        Some(argv) if argv.first().is_none_or(|p| p.trim().is_empty()) => {
            errors.check::<()>(Err(err(
                field("deploy"),
                "give the program and its arguments as a list, such as [\"systemctl\", \
                 \"reload\", \"nginx\"]; it is run directly, never through a shell",
            )));
            None
        }
        other => other.clone(),
    };
    let timeout = match c.deploy_timeout_secs {
        Some(0) => {
            errors.check::<()>(Err(err(field("deploy_timeout_secs"), "must be at least 1")));
            0
        }
        Some(secs) => secs,
        None => DEFAULT_DEPLOY_TIMEOUT_SECS,
    };
    let mut one = |f: &str, value: &Option<String>, parse: fn(&str) -> Result<u32, _>| {
        value.as_deref().and_then(|v| {
            errors.check(
                parse(v).map_err(|e: certfleet_deploy::DeployError| err(field(f), e.to_string())),
            )
        })
    };
    let ownership = Ownership {
        owner: one("owner", &c.owner, perms::resolve_user),
        group: one("group", &c.group, perms::resolve_group),
        mode: one("mode", &c.mode, perms::parse_mode),
        key_mode: one("key_mode", &c.key_mode, perms::parse_key_mode),
    };
    errors.finish(|| {
        Some(LocalDeploy {
            dir: dir.clone(),
            command,
            timeout: Duration::from_secs(timeout),
            ownership,
        })
    })
}
