//! The command line: `serve` (default), `migrate`, `agent create`, `agent list`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::agents::create_agent;
use crate::config::{LogFormat, Settings};
use crate::domain::AgentRole;
use crate::startup::Application;
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Real-time support and coaching server with local AI"
)]
pub struct Cli {
    /// Configuration file (default: ./switchboard.toml if it exists).
    #[arg(long, short, global = true, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage agent accounts.
    #[command(subcommand)]
    Agent(AgentCommand),
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an agent and print its API token (shown once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Agent)]
        role: RoleArg,
        /// Comma-separated skills, e.g. billing,safety.
        #[arg(long, value_delimiter = ',')]
        skills: Vec<String>,
        /// Conversations this agent may hold at once.
        #[arg(long, default_value_t = 5)]
        max_concurrent: i64,
    },
    /// List agents.
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Agent,
    Admin,
}

impl From<RoleArg> for AgentRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Agent => AgentRole::Agent,
            RoleArg::Admin => AgentRole::Admin,
        }
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    init_tracing(&settings);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let store = open(&settings).await?;
            store.migrate().await.context("migration failed")?;
            println!("database migrated");
            Ok(())
        }
        Command::Agent(AgentCommand::Create {
            name,
            email,
            role,
            skills,
            max_concurrent,
        }) => {
            let store = open(&settings).await?;
            store.migrate().await.context("migration failed")?;
            let (agent, token) =
                create_agent(&store, &name, &email, role.into(), &skills, max_concurrent).await?;
            println!(
                "created {} agent {} <{}> id {}",
                agent.role, agent.name, agent.email, agent.id
            );
            println!("API token (shown once, store it now): {token}");
            Ok(())
        }
        Command::Agent(AgentCommand::List) => {
            let store = open(&settings).await?;
            for a in store.agents().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\tskills={}\tmax={}",
                    a.id,
                    a.role,
                    a.status,
                    a.name,
                    a.email,
                    a.skills.join(","),
                    a.max_concurrent
                );
            }
            Ok(())
        }
    }
}

async fn open(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect(&settings.database.url, settings.database.max_connections)
        .await
        .with_context(|| format!("cannot open database {}", redact(&settings.database.url)))
}

/// Hides a password in a database URL before it is printed.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    raise_open_file_limit();
    let app = Application::build(settings.clone())
        .await
        .context("server failed to start")?;
    tracing::info!(
        host = %settings.server.host,
        port = app.port(),
        database = %redact(&settings.database.url),
        "switchboard listening"
    );
    let state = app.state().clone();
    let handle = app.handle();
    let deadline = Duration::from_secs(settings.server.shutdown_timeout_secs);
    tokio::spawn(async move {
        crate::drain::signal().await;
        tracing::info!(deadline_secs = deadline.as_secs(), "draining");
        crate::drain::shutdown(&state, handle, deadline).await;
    });
    app.run_until_stopped()
        .await
        .context("server stopped with an error")
}

/// Each WebSocket holds a file descriptor; lift the soft limit to the hard one.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
}

fn init_tracing(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
