//! `ferrite eval <model> --split PublicTest`.

use std::path::PathBuf;

use burn::prelude::{Device, Module};
use clap::Args;
use ferrite_data::{BatchConfig, Split};
use ferrite_models::SavedModel;
use ferrite_train::metrics::{Confusion, Tta, argmax_rows, log_loss, predict_probabilities};
use ferrite_train::report::{confusion_png, per_class_table};
use serde_json::json;

use super::dataset::DatasetArgs;

#[derive(Args)]
pub struct EvalArgs {
    /// A saved model (.ferrite).
    model: PathBuf,
    #[command(flatten)]
    dataset: DatasetArgs,
    /// Which split to evaluate on.
    #[arg(long, default_value = "PublicTest")]
    split: Split,
    /// Test-time augmentation: none, flip, or flip-crops (10 views); its effect is reported
    /// against plain prediction.
    #[arg(long, value_enum, default_value = "none")]
    tta: TtaArg,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Where to write the confusion-matrix PNG.
    #[arg(long)]
    confusion_png: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TtaArg {
    None,
    Flip,
    FlipCrops,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let device = Device::flex();
    let model = SavedModel::load(&args.model, &device)?;
    let store = args.dataset.load_onto(&model.meta.classes)?;
    let rows = store.indices_of(args.split);
    anyhow::ensure!(!rows.is_empty(), "the data has no {} rows", args.split);
    let batch = BatchConfig {
        input_side: model.meta.config.input_side,
        normalization: model.meta.normalization,
        ..BatchConfig::new(args.batch_size)
    };
    let network = model.network.valid();
    let k = model.meta.classes.len();
    let targets: Vec<u8> = rows.iter().map(|&i| store.label(i)).collect();
    let tta = match args.tta {
        TtaArg::None => Tta::None,
        TtaArg::Flip => Tta::Flip,
        TtaArg::FlipCrops => Tta::FlipCrops,
    };
    let started = std::time::Instant::now();
    let plain = predict_probabilities(&network, &store, &rows, &batch, Tta::None, &device);
    let plain_seconds = started.elapsed().as_secs_f64();
    let plain_confusion = Confusion::from_predictions(&targets, &argmax_rows(&plain, k), k);
    let (probabilities, confusion) = if tta == Tta::None {
        (plain.clone(), plain_confusion.clone())
    } else {
        let p = predict_probabilities(&network, &store, &rows, &batch, tta, &device);
        let c = Confusion::from_predictions(&targets, &argmax_rows(&p, k), k);
        (p, c)
    };
    if let Some(path) = &args.confusion_png {
        let title = format!(
            "{} on {} ({:.2} %)",
            model.meta.config.architecture,
            args.split,
            confusion.accuracy() * 100.0
        );
        confusion_png(&confusion, &model.meta, &title, path)?;
    }
    let per_class = confusion.per_class();
    if args.json {
        let names = model.meta.classes.names();
        let report = json!({
            "model": args.model,
            "split": args.split.as_str(),
            "images": rows.len(),
            "accuracy": confusion.accuracy(),
            "accuracy_without_tta": plain_confusion.accuracy(),
            "tta": tta,
            "loss": log_loss(&probabilities, &targets, k),
            "classes": names,
            "per_class": names.iter().zip(&per_class).map(|(n, s)| (n.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
            "confusion": confusion.counts.chunks(k).collect::<Vec<_>>(),
            "seconds_without_tta": plain_seconds,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} on {} ({} images)",
        args.model.display(),
        args.split,
        rows.len()
    );
    println!("accuracy {:.2} %", plain_confusion.accuracy() * 100.0);
    if tta != Tta::None {
        println!(
            "accuracy with TTA {tta:?} ({} views) {:.2} % ({:+.2} points)",
            tta.views().len(),
            confusion.accuracy() * 100.0,
            (confusion.accuracy() - plain_confusion.accuracy()) * 100.0
        );
    }
    println!("\n{}", per_class_table(&confusion, &model.meta));
    println!("errors per emotion (misclassified/total):");
    for (c, s) in per_class.iter().enumerate() {
        println!(
            "  {}: {}/{}",
            model.meta.classes.display_name(c),
            s.misclassified,
            s.support
        );
    }
    println!("\nconfusion matrix (rows: true, columns: predicted)");
    print!("{:>10}", "");
    for c in 0..k {
        print!(" {:>8}", short(&model.meta.classes.display_name(c)));
    }
    println!();
    for t in 0..k {
        print!("{:>10}", short(&model.meta.classes.display_name(t)));
        for p in 0..k {
            print!(" {:>8}", confusion.counts[t * k + p]);
        }
        println!();
    }
    Ok(())
}

fn short(name: &str) -> String {
    name.chars().take(8).collect()
}
