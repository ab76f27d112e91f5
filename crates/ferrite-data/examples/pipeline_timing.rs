//! Times the input pipeline alone: one epoch of the Training rows through the batcher
//! (shuffle, the recipe's augmentation, normalisation) at batch 64, no model. Prints a table
//! row; `bench/pipeline.sh` runs it. The pipeline must outpace training (≈200–400 img/s on
//! 2 cores), or it would be what limits it.

use std::path::PathBuf;
use std::time::Instant;

use ferrite_data::{AugmentConfig, BatchConfig, EpochPlan, LoadOptions, Split, fer2013};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or("usage: pipeline_timing <fer2013.csv[.gz]> [side]")?
        .into();
    let side: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(48);
    let store = fer2013::load(&path, LoadOptions::default())?.store;
    let rows = store.indices_of(Split::Training);
    println!("| augmentation | input | images | seconds | images/s |");
    println!("|---|---|---|---|---|");
    for (name, augment) in [
        ("none", AugmentConfig::none()),
        ("recipe", AugmentConfig::recipe()),
    ] {
        let config = BatchConfig {
            input_side: side,
            augment,
            ..BatchConfig::new(64)
        };
        let plan = EpochPlan::new(&store, &rows, &config, 0);
        let started = Instant::now();
        let mut position = 0;
        let mut checksum = 0.0f64;
        for batch in &plan.batches {
            let host = config.host_batch(&store, batch, 0, position);
            position += batch.len();
            checksum += host.images[0] as f64;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "| {name} | {side}×{side} | {} | {seconds:.2} | {:.0} |",
            rows.len(),
            rows.len() as f64 / seconds
        );
        std::hint::black_box(checksum);
    }
    Ok(())
}
