//! `ferrite`: the command line. Thin by design: it parses flags and calls the library crates.

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferrite",
    version,
    about = "Facial emotion recognition: data, training, evaluation and inference in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Look at a dataset: counts, blank images, duplicates, contact sheets.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Data(command) => commands::data::run(command),
    }
}
