use clap::Parser;
use switchboard::cli::{Cli, run};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    run(Cli::parse()).await
}
