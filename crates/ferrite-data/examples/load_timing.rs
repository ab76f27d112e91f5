//! Times one load of a FER2013 CSV (read, inflate, parse into a FaceStore) and prints
//! `seconds rows`. Used by `bench/load.sh`, which compares it with pandas.

use std::path::PathBuf;
use std::time::Instant;

use ferrite_data::{LoadOptions, fer2013};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or("usage: load_timing <fer2013.csv[.gz]>")?
        .into();
    let started = Instant::now();
    let loaded = fer2013::load(&path, LoadOptions::default())?;
    println!(
        "{:.4} {}",
        started.elapsed().as_secs_f64(),
        loaded.store.len()
    );
    Ok(())
}
