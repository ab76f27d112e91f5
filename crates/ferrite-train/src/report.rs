//! What a run leaves for people: `metrics.csv` (Keras `CSVLogger` columns), `curves.png`,
//! `confusion.png` and `report.md`.

use std::fmt::Write as _;
use std::path::Path;

use ferrite_models::ModelMeta;
use ferrite_models::saved::write_atomic;
use ferrite_viz::charts::{Series, confusion_heatmap, line_panels};

use crate::metrics::Confusion;
use crate::trainer::{EpochRecord, TrainOutcome};
use crate::{TrainConfig, TrainError};

pub fn write_metrics_csv(path: &Path, history: &[EpochRecord]) -> Result<(), TrainError> {
    let mut csv =
        String::from("epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds,images_per_second\n");
    for r in history {
        let _ = writeln!(
            csv,
            "{},{:.6},{:.6},{:.6},{:.6},{:.6e},{:.2},{:.1}",
            r.epoch,
            r.train_loss,
            r.train_accuracy,
            r.val_loss,
            r.val_accuracy,
            r.learning_rate,
            r.seconds,
            r.images_per_second
        );
    }
    Ok(write_atomic(path, csv.as_bytes())?)
}

/// Loss and accuracy per epoch, train vs validation.
pub fn curves_png(history: &[EpochRecord], title: &str, path: &Path) -> Result<(), TrainError> {
    let series = |name: &str, f: fn(&EpochRecord) -> f64| Series {
        name: name.to_string(),
        points: history.iter().map(|r| (r.epoch as f64, f(r))).collect(),
    };
    let image = line_panels(
        title,
        "epoch",
        &[
            (
                "loss",
                vec![
                    series("train", |r| r.train_loss),
                    series("validation", |r| r.val_loss),
                ],
            ),
            (
                "accuracy",
                vec![
                    series("train", |r| r.train_accuracy),
                    series("validation", |r| r.val_accuracy),
                ],
            ),
        ],
    )?;
    Ok(ferrite_viz::save_png(image, path)?)
}

pub fn confusion_png(
    confusion: &Confusion,
    meta: &ModelMeta,
    title: &str,
    path: &Path,
) -> Result<(), TrainError> {
    let names: Vec<String> = (0..meta.classes.len())
        .map(|c| meta.classes.display_name(c))
        .collect();
    Ok(ferrite_viz::save_png(
        confusion_heatmap(title, &names, &confusion.counts)?,
        path,
    )?)
}

/// The per-class table: precision, recall, F1 and the recipe's misclassified/total.
pub fn per_class_table(confusion: &Confusion, meta: &ModelMeta) -> String {
    let mut table = String::from(
        "| emotion | precision | recall | F1 | misclassified/total |\n|---|---|---|---|---|\n",
    );
    for (c, s) in confusion.per_class().iter().enumerate() {
        let _ = writeln!(
            table,
            "| {} | {:.3} | {:.3} | {:.3} | {}/{} |",
            meta.classes.display_name(c),
            s.precision,
            s.recall,
            s.f1,
            s.misclassified,
            s.support
        );
    }
    table
}

pub fn write_run_report(
    outcome: &TrainOutcome,
    config: &TrainConfig,
    meta: &ModelMeta,
) -> Result<(), TrainError> {
    let dir = &outcome.run_dir;
    let title = format!("{} on FER2013", config.model);
    curves_png(&outcome.history, &title, &dir.join("curves.png"))?;
    confusion_png(
        &outcome.confusion,
        meta,
        &format!("{title}: best epoch on validation"),
        &dir.join("confusion.png"),
    )?;
    let mut md = format!("# Run report: {}\n\n", config.model);
    let _ = writeln!(
        md,
        "Best validation accuracy **{:.2} %** at epoch {} of {} run ({} planned{}); {:.0} s of training.\n",
        outcome.best_accuracy * 100.0,
        outcome.best_epoch,
        outcome.history.len(),
        config.epochs,
        if outcome.stopped_early {
            ", stopped early"
        } else {
            ""
        },
        outcome.seconds
    );
    let _ = writeln!(
        md,
        "![training curves](curves.png)\n\n## Best model on validation\n"
    );
    md += &per_class_table(&outcome.confusion, meta);
    let _ = writeln!(md, "\n![confusion matrix](confusion.png)\n\n## Epochs\n");
    md += "| epoch | loss | accuracy | val_loss | val_accuracy | lr | seconds | img/s |\n|---|---|---|---|---|---|---|---|\n";
    for r in &outcome.history {
        let _ = writeln!(
            md,
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.2e} | {:.0} | {:.0} |",
            r.epoch,
            r.train_loss,
            r.train_accuracy,
            r.val_loss,
            r.val_accuracy,
            r.learning_rate,
            r.seconds,
            r.images_per_second
        );
    }
    let _ = writeln!(md, "\n## Config\n\n```toml\n{}```", config.to_toml());
    Ok(write_atomic(&dir.join("report.md"), md.as_bytes())?)
}
