//! `ferrite mine <model>`: which training images does a model get wrong?

use std::path::PathBuf;

use burn::prelude::Device;
use clap::Args;
use ferrite_data::Split;
use ferrite_models::SavedModel;
use ferrite_train::mining::{mine, write_rows};

use super::dataset::DatasetArgs;

#[derive(Args)]
pub struct MineArgs {
    /// A saved model (.ferrite).
    model: PathBuf,
    #[command(flatten)]
    dataset: DatasetArgs,
    /// Where to write the misclassified rows (FER2013 data-row numbers, one per line);
    /// `ferrite train --train-rows FILE` trains on them.
    #[arg(long, default_value = "runs/hard-rows.txt")]
    out: PathBuf,
    /// Keep at most this share of the misclassified images from any one class.
    #[arg(long)]
    cap: Option<f64>,
}

pub fn run(args: &MineArgs) -> anyhow::Result<()> {
    let device = Device::flex();
    let model = SavedModel::load(&args.model, &device)?;
    let store = args.dataset.load_onto(&model.meta.classes)?;
    let rows = store.indices_of(Split::Training);
    anyhow::ensure!(!rows.is_empty(), "the data has no Training rows");
    let hard = mine(&model, &store, &rows, args.cap, &device);
    println!(
        "misclassified training images: {} of {}",
        hard.rows.len(),
        rows.len()
    );
    for (c, (wrong, total)) in hard.per_class.iter().enumerate() {
        println!("  {}: {wrong}/{total}", store.classes().display_name(c));
    }
    write_rows(&args.out, &store, &hard.rows)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
