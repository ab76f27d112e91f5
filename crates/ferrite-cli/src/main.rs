//! `ferrite`: the command line. Thin by design: it parses flags and calls the library crates.

mod commands;

// Training allocates and frees large tensors every step; see `ferrite_train::allocator`.
#[global_allocator]
static ALLOCATOR: ferrite_train::allocator::Allocator = ferrite_train::allocator::Allocator;

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
    /// The whole pipeline on a group photo shipped in the binary, with the default model.
    Demo(commands::demo::DemoArgs),
    /// Look at a dataset: counts, blank images, duplicates, contact sheets.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// List the model zoo with parameters and multiply-adds per image.
    Models(commands::models::ModelsArgs),
    /// Train a model; writes a run folder (config, metrics CSV, best/last model, report).
    Train(Box<commands::train::TrainArgs>),
    /// Evaluate a saved model: accuracy, per-class P/R/F1, errors per emotion, confusion matrix.
    Eval(commands::eval::EvalArgs),
    /// Run the same training over a list of values (batch size, learning rate, model,
    /// augmentation) and seeds; writes a comparison table and curves.
    Sweep(Box<commands::sweep::SweepArgs>),
    /// Predict every training image and list the misclassified ones (hard-data mining).
    Mine(commands::mine::MineArgs),
    /// Find every face in pictures or folders, classify its emotion, print JSON or CSV.
    Predict(Box<commands::predict::PredictArgs>),
    /// Serve the HTTP API, the live WebSocket and the browser page.
    Serve(Box<commands::serve::ServeArgs>),
    /// Annotate a video file or camera: faces tracked, labels smoothed, CSV and plot.
    Video(Box<commands::video::VideoArgs>),
}

fn main() -> anyhow::Result<()> {
    ferrite_train::allocator::keep_freed_memory();
    let command = Cli::parse().command;
    if matches!(command, Command::Serve(_)) {
        // The server computes on its own worker threads, never on `main`'s, and their face
        // detection needs the core a spinning pool thread would hold (`bench/serve.sh`: 3–5 %
        // fewer requests/s at 4 and 16 clients with spinning).
        ferrite_models::pool::set_default_spin_window(std::time::Duration::ZERO);
    } else {
        ferrite_models::pool::run_on_calling_thread()?;
    }
    match command {
        Command::Demo(args) => commands::demo::run(&args),
        Command::Data(command) => commands::data::run(command),
        Command::Models(args) => commands::models::run(&args),
        Command::Train(args) => commands::train::run(&args),
        Command::Eval(args) => commands::eval::run(&args),
        Command::Sweep(args) => commands::sweep::run(&args),
        Command::Mine(args) => commands::mine::run(&args),
        Command::Predict(args) => commands::predict::run(&args),
        Command::Video(args) => commands::video::run(&args),
        Command::Serve(args) => commands::serve::run(&args),
    }
}
