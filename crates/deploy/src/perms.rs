//! Owners, groups and permission bits of deployed files.
//!
//! Names are resolved through NSS (`getpwnam`, `getgrnam`, via the `nix` crate), so users and
//! groups from LDAP or sssd work as they do for `chown`. Numeric ids are accepted as they are.

use nix::unistd::{Group, User};

use crate::DeployError;

/// Mode of files without a private key, unless carried over or set.
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of files holding a private key without a group.
pub const KEY_MODE: u32 = 0o600;
/// Mode of files holding a private key when a group is given.
pub const KEY_MODE_WITH_GROUP: u32 = 0o640;
/// Mode of a directory certfleet creates.
pub const DIR_MODE: u32 = 0o755;
/// Mode of a directory certfleet creates that holds only private keys.
pub const KEY_DIR_MODE: u32 = 0o700;
/// Mode of such a directory when a group is given.
pub const KEY_DIR_MODE_WITH_GROUP: u32 = 0o750;

/// Owner, group and modes asked for explicitly (by flags or config). What is not set is
/// carried over from the file being replaced, or defaults to the modes above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Owner uid.
    pub owner: Option<u32>,
    /// Group gid.
    pub group: Option<u32>,
    /// Mode of files without a private key.
    pub mode: Option<u32>,
    /// Mode of files with a private key.
    pub key_mode: Option<u32>,
}

/// Resolve a user name (or numeric uid).
pub fn resolve_user(name: &str) -> Result<u32, DeployError> {
    if let Ok(uid) = name.parse::<u32>() {
        return Ok(uid);
    }
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        _ => Err(DeployError::UnknownUser(name.to_string())),
    }
}

/// Resolve a group name (or numeric gid).
pub fn resolve_group(name: &str) -> Result<u32, DeployError> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        _ => Err(DeployError::UnknownGroup(name.to_string())),
    }
}

/// Parse permission bits written in octal (`0640`, `640`, `0o640`).
pub fn parse_mode(input: &str) -> Result<u32, DeployError> {
    let digits = input.trim_start_matches("0o");
    let bad = |reason: &str| DeployError::Mode {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(bad("give permission bits in octal, such as 0640"));
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| bad("not octal"))?;
    if mode & 0o7000 != 0 {
        return Err(bad(
            "setuid, setgid and sticky bits are not allowed on certificate files",
        ));
    }
    if mode & 0o400 == 0 {
        return Err(bad("the owner must be able to read the file"));
    }
    if mode & 0o002 != 0 {
        return Err(bad(
            "a file others can write could be replaced by anyone on the machine; use 0644 or \
             less",
        ));
    }
    Ok(mode)
}

/// Parse a mode for files holding a private key: as [`parse_mode`], and never readable,
/// writable or executable by others.
pub fn parse_key_mode(input: &str) -> Result<u32, DeployError> {
    let mode = parse_mode(input)?;
    if mode & 0o007 != 0 {
        return Err(DeployError::Mode {
            input: input.to_string(),
            reason: "a private key must not be accessible to others; use at most 0640 (or 0660)"
                .to_string(),
        });
    }
    Ok(mode)
}

/// The mode a new private key file gets when it replaces one with mode `old`: 0600 plus the
/// old file's group-read bit, never bits for others (the rule certbot settled on).
pub fn carried_key_mode(old: u32) -> u32 {
    KEY_MODE | (old & 0o040)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_refuse() {
        assert_eq!(parse_mode("0640").unwrap(), 0o640);
        assert_eq!(parse_mode("644").unwrap(), 0o644);
        assert_eq!(parse_mode("0o600").unwrap(), 0o600);
        for bad in [
            "",
            "0x1a4",
            "999",
            "4755",
            "0044",
            "rw-r--r--",
            "0666",
            "0646",
        ] {
            let e = parse_mode(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert_eq!(parse_key_mode("0640").unwrap(), 0o640);
        let e = parse_key_mode("0644").unwrap_err().to_string();
        assert!(e.contains("others"), "{e}");
        let e = parse_mode("0666").unwrap_err().to_string();
        assert!(e.contains("could be replaced by anyone"), "{e}");
    }

    #[test]
    fn key_mode_keeps_only_group_read() {
        assert_eq!(carried_key_mode(0o640), 0o640);
        assert_eq!(carried_key_mode(0o600), 0o600);
        assert_eq!(carried_key_mode(0o666), 0o640);
        assert_eq!(carried_key_mode(0o604), 0o600);
    }

    #[test]
    fn names_resolve() {
        assert_eq!(resolve_user("root").unwrap(), 0);
        assert_eq!(resolve_group("0").unwrap(), 0);
        let e = resolve_group("no-such-group-certfleet")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"no-such-group-certfleet\""), "{e}");
    }
}
