//! `certfleet account ...`: the ACME account of each issuer — one per issuer, kept for good.

use std::path::Path;

use certfleet_server::accounts::{AccountView, ContactsUpdated, RolledOverView, UpdateContacts};
use clap::Subcommand;

use crate::cert::Connection;
use crate::{CliError, print_json, table};

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// List each issuer's ACME account: URL, the contacts the CA holds, the configured ones,
    /// key type and thumbprint.
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Set the account's contacts at the CA now (RFC 8555 §7.3.2); the account URL stays.
    #[command(
        after_help = "The contacts given override the configured ones (config file or \
`server --contact`) from now on, across restarts, until the configured contacts are edited: then \
the configuration rules again (an `account_updated` event says so). --from-config goes back to \
the configured contacts at once. A contact the CA refuses is reported in the CA's words.\n\n\
Example:\n  certfleet account update default --contact mailto:oncall@example.com --contact \
mailto:team@example.com"
    )]
    Update {
        /// Issuer name (see `certfleet account ls`).
        issuer: String,
        /// Contact, a mailto: URL; repeatable.
        #[arg(
            long = "contact",
            value_name = "URL",
            required_unless_present = "from_config"
        )]
        contacts: Vec<String>,
        /// Use the configured contacts again (drops what `account update` set).
        #[arg(long, conflicts_with = "contacts")]
        from_config: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Replace the account key (RFC 8555 §7.3.5); the account URL and its certificates stay.
    #[command(
        after_help = "The new key is stored (sealed) before the CA is asked, so a crash \
or a lost answer never costs the account: certfleet then asks the CA which key it holds."
    )]
    Rollover {
        /// Issuer name (see `certfleet account ls`).
        issuer: String,
        #[command(flatten)]
        conn: Connection,
    },
}

fn account_path(issuer: &str) -> String {
    format!("/api/v1/accounts/{}", crate::cert::path_segment(issuer))
}

pub async fn run(cmd: AccountCommand, data_dir: &Path, json: bool) -> Result<(), CliError> {
    match cmd {
        AccountCommand::Ls { conn } => {
            let accounts: Vec<AccountView> =
                conn.connect(data_dir)?.get("/api/v1/accounts").await?;
            if json {
                return print_json(&accounts);
            }
            print!("{}", list_table(&accounts));
            Ok(())
        }
        AccountCommand::Update {
            issuer,
            contacts,
            from_config,
            conn,
        } => {
            let api = conn.connect(data_dir)?;
            let contacts = if from_config {
                let accounts: Vec<AccountView> = api.get("/api/v1/accounts").await?;
                accounts
                    .into_iter()
                    .find(|a| a.issuer == issuer)
                    .map(|a| a.configured_contacts)
                    .unwrap_or_default()
            } else {
                contacts
            };
            let body = UpdateContacts { contacts };
            let done: ContactsUpdated = api
                .post(&format!("{}/contacts", account_path(&issuer)), Some(&body))
                .await
                .map_err(relabel_contacts)?;
            if json {
                return print_json(&done);
            }
            let a = &done.account;
            let rule = if done.follows_configuration {
                "the configured contacts".to_string()
            } else {
                format!(
                    "they override the configured [{}] until those are edited",
                    a.configured_contacts.join(", ")
                )
            };
            eprintln!(
                "{issuer}: account {} now has contacts [{}] (were [{}]); {rule}",
                a.account_url.as_deref().unwrap_or("?"),
                a.contacts.join(", "),
                done.before.join(", ")
            );
            Ok(())
        }
        AccountCommand::Rollover { issuer, conn } => {
            let done: RolledOverView = conn
                .connect(data_dir)?
                .post(&format!("{}/rollover", account_path(&issuer)), None::<&()>)
                .await?;
            if json {
                return print_json(&done);
            }
            eprintln!(
                "{issuer}: account {} has a new key: thumbprint {} → {}{}",
                done.account.account_url.as_deref().unwrap_or("?"),
                done.old_thumbprint,
                done.account.key_thumbprint.as_deref().unwrap_or("?"),
                if done.answer_lost {
                    " (the CA's answer was lost; it was asked which key it holds)"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}

/// `contacts[1]: ...` from the server names the flag as typed.
fn relabel_contacts(e: CliError) -> CliError {
    (0..16).fold(e, |e, i| e.relabel(&format!("contacts[{i}]"), "--contact"))
}

fn list_table(accounts: &[AccountView]) -> String {
    let header = [
        "ISSUER",
        "ACCOUNT URL",
        "CONTACTS (AT THE CA)",
        "CONFIGURED",
        "KEY",
        "THUMBPRINT",
    ];
    let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    let list = |l: &[String]| {
        if l.is_empty() {
            "-".to_string()
        } else {
            l.join(",")
        }
    };
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            let contacts = match &a.contacts_override {
                Some(_) => format!("{} (set by account update)", list(&a.contacts)),
                None => list(&a.contacts),
            };
            let key = match (&a.key_type, a.rollover_pending) {
                (Some(k), true) => format!("{k} (rollover pending)"),
                (k, _) => dash(k.as_deref()),
            };
            vec![
                a.issuer.clone(),
                dash(a.account_url.as_deref()),
                contacts,
                list(&a.configured_contacts),
                key,
                dash(a.key_thumbprint.as_deref()),
            ]
        })
        .collect();
    table::render(&header, &rows)
}
