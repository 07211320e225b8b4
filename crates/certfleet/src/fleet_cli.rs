//! `certfleet agent ...` and `certfleet token ...`: run an agent, list agents, manage tokens.

use std::path::PathBuf;

use certfleet_server::fleet::views::{AgentView, CreatedToken, NewTokenRequest, TokenView};
use clap::{Args, Subcommand};

use crate::cert::Connection;
use crate::{CliError, exit, print_json, table};

const AGENT_HELP: &str = "Run on each web server: `certfleet agent --config /etc/certfleet/agent.toml`. \
The agent syncs in full at start (with --once it then exits: run it at boot before the web server \
starts), deploys every certificate its token is entitled to, runs the check and reload hooks, and \
counts a deployment as done only when a TLS handshake with the verify endpoint shows the new \
serial; on failure the previous files are put back. It then watches the server (long-poll) and \
keeps the deployed files when the server is unreachable. See docs/agent.md for the config file.\n\n\
Exit codes (--once): 0 every certificate deployed and verified (or already was, or written while \
the web server is not running yet), 1 a deployment failed or the config is invalid, 3 the server \
could not be reached, did not match the pinned fingerprint, or refused the token.";

/// `certfleet agent`.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = AGENT_HELP
)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    /// The agent's configuration file (TOML).
    #[arg(long, value_name = "FILE", required = true)]
    config: Option<PathBuf>,
    /// Sync, deploy and report once, then exit (for boot scripts).
    #[arg(long)]
    once: bool,
}

impl AgentArgs {
    /// Whether this runs the agent (rather than a management command).
    pub fn runs_agent(&self) -> bool {
        self.command.is_none()
    }
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// List agents: last seen, certificates in sync, clock offset.
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Manage agent tokens.
    #[command(subcommand)]
    Token(AgentTokenCommand),
}

#[derive(Debug, Subcommand)]
enum AgentTokenCommand {
    /// Create an agent token; it is printed once, on standard output.
    #[command(
        after_help = "Example:\n  certfleet agent token create web-1 --selector app=www > /etc/certfleet/agent.token\n\n\
The agent receives exactly the certificates whose labels match the selector (label them with \
`certfleet cert label NAME app=www`). Selector syntax: key=value, key!=value, key, !key, \
comma-separated (all must hold)."
    )]
    Create {
        /// The agent's name (shown in `agent ls` and events).
        name: String,
        /// Which certificates it receives, such as app=www.
        #[arg(long, value_name = "SELECTOR")]
        selector: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke an agent token; the agent is refused from then on.
    Revoke {
        /// The agent's name.
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// List agent tokens (never the tokens themselves).
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
}

/// `certfleet token ...`: tokens of any role.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token: admin (everything), viewer (read-only, no key bytes) or agent.
    #[command(after_help = "Example:\n  certfleet token create dashboard --role viewer")]
    Create {
        /// Unique name.
        name: String,
        /// Role.
        #[arg(long, value_parser = ["admin", "viewer", "agent"])]
        role: String,
        /// Selector of an agent token, such as app=www.
        #[arg(long, value_name = "SELECTOR")]
        selector: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke a token.
    Revoke {
        /// Its name.
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// List tokens (never the tokens themselves).
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
}

/// Run `certfleet agent --config F [--once]`.
pub async fn run_agent(args: AgentArgs) -> Result<(), CliError> {
    let path = args
        .config
        .ok_or_else(|| CliError::with_code(2, "--config FILE is required"))?;
    let config = certfleet_agent::config::load(&path).map_err(|e| {
        CliError::failure(format!(
            "invalid agent configuration {}: {e}",
            path.display()
        ))
    })?;
    let result = certfleet_agent::run(config, args.once).await;
    match result {
        Ok(summary) => {
            for name in &summary.deployed {
                eprintln!("{name}: deployed and verified by TLS handshake");
            }
            for name in &summary.up_to_date {
                eprintln!("{name}: already deployed and verified");
            }
            for (name, why) in &summary.unverified {
                eprintln!("{name}: {why}");
            }
            if summary.failed.is_empty() {
                return Ok(());
            }
            let lines: Vec<String> = summary
                .failed
                .iter()
                .map(|(name, why)| format!("{name}: {why}"))
                .collect();
            Err(CliError::failure(format!(
                "deployment failed:\n  {}",
                lines.join("\n  ")
            )))
        }
        Err(
            e @ (certfleet_agent::AgentError::Unreachable { .. }
            | certfleet_agent::AgentError::Untrusted { .. }),
        ) => Err(CliError::with_code(exit::UNREACHABLE, e.to_string())),
        Err(e @ certfleet_agent::AgentError::Refused { status: 401, .. }) => {
            Err(CliError::with_code(
                exit::UNREACHABLE,
                format!("{e} (the agent token was refused)"),
            ))
        }
        Err(e) => Err(CliError::failure(e.to_string())),
    }
}

/// Run a management subcommand of `certfleet agent`.
pub async fn run_agent_command(
    args: AgentArgs,
    data_dir: PathBuf,
    json: bool,
) -> Result<(), CliError> {
    match args.command {
        None => run_agent(args).await,
        Some(AgentCommand::Ls { conn }) => {
            let agents: Vec<AgentView> = conn.connect(&data_dir)?.get("/api/v1/agents").await?;
            if json {
                return print_json(&agents);
            }
            print!("{}", agents_table(&agents));
            Ok(())
        }
        Some(AgentCommand::Token(cmd)) => {
            let generic = match cmd {
                AgentTokenCommand::Create {
                    name,
                    selector,
                    conn,
                } => TokenCommand::Create {
                    name,
                    role: "agent".into(),
                    selector: Some(selector),
                    conn,
                },
                AgentTokenCommand::Revoke { name, conn } => {
                    // Only agent tokens: another role's token is revoked with `token revoke`.
                    let api = conn.connect(&data_dir)?;
                    let tokens: Vec<TokenView> = api.get("/api/v1/tokens").await?;
                    match tokens.iter().find(|t| t.name == name) {
                        Some(t) if t.role != "agent" => {
                            return Err(CliError::failure(format!(
                                "{name:?} is a {} token, not an agent token; revoke it with `certfleet token revoke {name}`",
                                t.role
                            )));
                        }
                        None => {
                            return Err(CliError::failure(format!(
                                "there is no agent token {name:?} (`certfleet agent token ls` lists them)"
                            ))
                            .kind("not-found"));
                        }
                        Some(_) => {}
                    }
                    api.delete(&format!("/api/v1/tokens/{}", safe(&name)))
                        .await?;
                    eprintln!("{name}: agent token revoked");
                    return Ok(());
                }
                AgentTokenCommand::Ls { conn } => {
                    let tokens: Vec<TokenView> =
                        conn.connect(&data_dir)?.get("/api/v1/tokens").await?;
                    let agents: Vec<TokenView> =
                        tokens.into_iter().filter(|t| t.role == "agent").collect();
                    return print_tokens(&agents, json);
                }
            };
            run_token(generic, data_dir, json).await
        }
    }
}

/// Run `certfleet token ...`.
pub async fn run_token(cmd: TokenCommand, data_dir: PathBuf, json: bool) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            selector,
            conn,
        } => {
            let body = NewTokenRequest {
                name: name.clone(),
                role: role.clone(),
                selector,
            };
            let created: CreatedToken = conn
                .connect(&data_dir)?
                .post("/api/v1/tokens", Some(&body))
                .await?;
            if json {
                return print_json(&created);
            }
            println!("{}", created.token);
            let scope = match &created.view.selector {
                Some(s) => format!(" for selector {s}"),
                None => String::new(),
            };
            eprintln!(
                "{role} token {name:?} created{scope}. It is shown once: store it now (for an agent, in its token_file, mode 0600)."
            );
            Ok(())
        }
        TokenCommand::Revoke { name, conn } => {
            conn.connect(&data_dir)?
                .delete(&format!("/api/v1/tokens/{}", safe(&name)))
                .await?;
            eprintln!("{name}: token revoked");
            Ok(())
        }
        TokenCommand::Ls { conn } => {
            let tokens: Vec<TokenView> = conn.connect(&data_dir)?.get("/api/v1/tokens").await?;
            print_tokens(&tokens, json)
        }
    }
}

fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn print_tokens(tokens: &[TokenView], json: bool) -> Result<(), CliError> {
    if json {
        return print_json(&tokens);
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.role.clone(),
                t.selector.clone().unwrap_or_else(|| "-".into()),
                short(&t.created_at),
                t.last_seen
                    .as_deref()
                    .map(short)
                    .unwrap_or_else(|| "never".into()),
                t.revoked_at
                    .as_deref()
                    .map(|r| format!("revoked {}", short(r)))
                    .unwrap_or_else(|| "live".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "NAME",
                "ROLE",
                "SELECTOR",
                "CREATED (UTC)",
                "LAST SEEN (UTC)",
                "STATUS"
            ],
            &rows
        )
    );
    Ok(())
}

/// The `agent ls` table.
pub fn agents_table(agents: &[AgentView]) -> String {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.selector.clone().unwrap_or_else(|| "-".into()),
                a.last_seen
                    .as_deref()
                    .map(short)
                    .unwrap_or_else(|| "never".into()),
                a.entitled.to_string(),
                format!("{}/{}", a.in_sync, a.entitled),
                a.clock_offset_ms
                    .map(|ms| format!("{:+.1} s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into()),
                if a.serves_http01 { "yes" } else { "no" }.into(),
                if a.revoked { "revoked" } else { "live" }.into(),
            ]
        })
        .collect();
    table::render(
        &[
            "NAME",
            "SELECTOR",
            "LAST SEEN (UTC)",
            "CERTIFICATES",
            "IN SYNC",
            "CLOCK OFFSET",
            "HTTP-01",
            "TOKEN",
        ],
        &rows,
    )
}

fn short(rfc3339: &str) -> String {
    rfc3339.get(..19).unwrap_or(rfc3339).replace('T', " ")
}
