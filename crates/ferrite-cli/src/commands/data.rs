//! `ferrite data inspect`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ferrite_data::inspect::{Inspection, inspect};
use ferrite_data::{AugmentConfig, Augmenter, FaceStore};
use serde_json::json;

use super::dataset::DatasetArgs;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Counts per split × class, blank images, duplicates, a contact sheet and (optionally)
    /// an augmentation preview.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    dataset: DatasetArgs,
    /// Folder for the pictures.
    #[arg(long, default_value = "runs/inspect")]
    out: PathBuf,
    /// Faces per class on the contact sheet.
    #[arg(long, default_value_t = 10)]
    per_class: usize,
    /// Also write a grid of augmented versions of a few faces (the recipe's augmentation).
    #[arg(long)]
    augment_preview: bool,
    /// Seed for the sampled faces and augmentations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Inspect(args) => run_inspect(&args),
    }
}

fn run_inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let store = args.dataset.load()?;
    let report = inspect(&store);
    let all_rows: Vec<usize> = (0..store.len()).collect();
    let sheet_path = args.out.join("contact-sheet.png");
    ferrite_viz::save_png(
        ferrite_viz::sheet::contact_sheet(&store, &all_rows, args.per_class, args.seed),
        &sheet_path,
    )?;
    let mut pictures = vec![sheet_path];
    if args.augment_preview {
        let path = args.out.join("augment-preview.png");
        let faces: Vec<usize> =
            ferrite_viz::sheet::sample_per_class(&store, &all_rows, 1, args.seed).concat();
        let augmenter = Augmenter::new(AugmentConfig::recipe(), args.seed);
        ferrite_viz::save_png(
            ferrite_viz::sheet::augmentation_grid(&store, &faces, &augmenter, 8, 48),
            &path,
        )?;
        pictures.push(path);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report_json(&store, &report, &pictures))?
        );
    } else {
        print_report(&store, &report);
        for picture in &pictures {
            println!("wrote {}", picture.display());
        }
    }
    Ok(())
}

fn print_report(store: &FaceStore, report: &Inspection) {
    let classes = store.classes();
    let names: Vec<String> = (0..classes.len())
        .map(|c| classes.display_name(c))
        .collect();
    let width = |name: &str| name.len().max(6);
    print!("{:<12}", "split");
    for name in &names {
        print!(" {:>w$}", name, w = width(name));
    }
    println!(" {:>7}", "total");
    for (split, counts) in &report.counts {
        print!("{:<12}", split.as_str());
        for (name, n) in names.iter().zip(counts) {
            print!(" {:>w$}", n, w = width(name));
        }
        println!(" {:>7}", counts.iter().sum::<usize>());
    }
    println!();
    let black = report
        .constant_images
        .iter()
        .filter(|c| c.value == 0)
        .count();
    println!(
        "constant images: {} ({black} all black)",
        report.constant_images.len()
    );
    for c in &report.constant_images {
        println!(
            "  row {:>5}  {:<11} value {:>3}  labelled {}",
            c.source_row,
            c.split.as_str(),
            c.value,
            classes.display_name(store.label(c.index) as usize)
        );
    }
    let d = &report.duplicates;
    println!(
        "exact duplicates: {} groups covering {} rows; {} groups carry conflicting labels",
        d.groups.len(),
        d.rows(),
        d.conflicting_groups
    );
    for (a, b, n) in &d.cross_split {
        println!("  {a} rows with an exact copy in {b}: {n}");
    }
}

fn report_json(store: &FaceStore, report: &Inspection, pictures: &[PathBuf]) -> serde_json::Value {
    let classes = store.classes().names();
    json!({
        "classes": classes,
        "counts": report.counts.iter().map(|(s, c)| (s.as_str().to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
        "constant_images": report.constant_images.iter().map(|c| json!({
            "row": c.source_row, "split": c.split.as_str(), "value": c.value, "label": classes[store.label(c.index) as usize],
        })).collect::<Vec<_>>(),
        "duplicates": {
            "groups": report.duplicates.groups.len(),
            "rows": report.duplicates.rows(),
            "conflicting_groups": report.duplicates.conflicting_groups,
            "cross_split": report.duplicates.cross_split.iter().map(|(a, b, n)| json!({"rows_of": a.as_str(), "copied_in": b.as_str(), "rows": n})).collect::<Vec<_>>(),
        },
        "pictures": pictures,
    })
}
