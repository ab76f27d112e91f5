//! `ferrite train` killed mid-epoch and resumed, and `ferrite eval` agreeing with training,
//! on small real subsets of FER2013 (SKIP when the data is absent).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ferrite() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrite"));
    command.current_dir(root());
    command
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = ferrite().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn metrics_epochs(dir: &Path) -> Vec<usize> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_run_killed_mid_epoch_resumes_from_its_checkpoint_and_finishes() {
    let Some(csv) = ferrite_data::locate::shared_csv_or_skip(&root(), "kill and resume") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (csv, out_s) = (csv.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "train",
        csv,
        "--model",
        "seed-cnn",
        "--epochs",
        "3",
        "--limit-train",
        "1500",
        "--limit-validation",
        "200",
        "--out",
        out_s,
        "--quiet",
    ];

    let mut child = ferrite()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.join("checkpoint.bin").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint after 5 minutes"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "training ended before its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first epoch took `started.elapsed()`; a third of that into the second epoch is mid-epoch.
    std::thread::sleep(started.elapsed() / 3);
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before_kill = metrics_epochs(&out);
    assert!(
        !done_before_kill.is_empty() && done_before_kill.len() < 3,
        "{done_before_kill:?}"
    );

    // Resuming needs only the run folder: the run's config.toml supplies the rest.
    let (ok, _, stderr) = run(&["train", csv, "--out", out_s, "--resume", "--quiet"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "resuming {out_s} after epoch {}",
            done_before_kill.len()
        )),
        "{stderr}"
    );
    assert_eq!(metrics_epochs(&out), [1, 2, 3]);
    assert!(out.join("report.md").is_file());
}

#[test]
fn eval_reproduces_the_validation_accuracy_of_training() {
    let Some(csv) = ferrite_data::locate::shared_csv_or_skip(&root(), "eval after train") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (csv, out_s) = (csv.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "train",
        csv,
        "--model",
        "mini-xception",
        "--epochs",
        "1",
        "--limit-train",
        "800",
        "--exclude",
        "disgust",
        "--out",
        out_s,
        "--quiet",
    ];
    let (ok, _, stderr) = run(&args);
    assert!(ok, "{stderr}");
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let val_accuracy: f64 = metrics
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();

    let model = out.join("best.ferrite");
    let png = dir.path().join("confusion.png");
    let (ok, stdout, stderr) = run(&[
        "eval",
        model.to_str().unwrap(),
        csv,
        "--tta",
        "flip",
        "--json",
        "--confusion-png",
        png.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["images"], 3589 - 56, "PublicTest without Disgust");
    assert_eq!(report["classes"].as_array().unwrap().len(), 6);
    let plain = report["accuracy_without_tta"].as_f64().unwrap();
    assert!(
        (plain - val_accuracy).abs() < 1e-6,
        "eval {plain} vs training {val_accuracy}"
    );
    assert!(report["accuracy"].as_f64().unwrap() > 0.0);
    let per_class_total: u64 = report["per_class"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["support"].as_u64().unwrap())
        .sum();
    assert_eq!(per_class_total, 3589 - 56);
    assert!(png.is_file());
}

#[test]
fn models_lists_the_zoo() {
    let (ok, stdout, _) = run(&["models"]);
    assert!(ok);
    for name in [
        "seed-cnn",
        "seed-wide",
        "dexpression",
        "mini-xception",
        "vgg",
    ] {
        assert!(stdout.contains(name), "{name} missing from\n{stdout}");
    }
}

#[test]
fn sweep_compares_batch_sizes_over_seeds_and_reuses_finished_runs() {
    let Some(csv) = ferrite_data::locate::shared_csv_or_skip(&root(), "sweep") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let (csv, out_s) = (csv.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "sweep",
        csv,
        "--batch-sizes",
        "16,32",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--limit-train",
        "200",
        "--limit-validation",
        "100",
        "--out",
        out_s,
        "--quiet",
    ];
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("16") && stdout.contains("32") && stdout.contains('±'),
        "{stdout}"
    );
    let table = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(table.lines().count(), 1 + 4, "{table}");
    assert!(out.join("sweep.md").is_file() && out.join("sweep.png").is_file());
    for run in [
        "batch_size-16-seed42",
        "batch_size-16-seed43",
        "batch_size-32-seed42",
        "batch_size-32-seed43",
    ] {
        assert!(out.join(run).join("best.ferrite").is_file(), "{run}");
    }
    let (ok, _, stderr) = run(&args);
    assert!(ok, "{stderr}");
    assert_eq!(stderr.matches("already finished").count(), 4, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("sweep.csv")).unwrap(),
        table
    );
}

#[test]
fn hard_mining_runs_normal_hard_and_rebalance_phases_with_a_capped_hard_set() {
    let Some(csv_path) = ferrite_data::locate::shared_csv_or_skip(&root(), "hard mining") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mining");
    let (csv, out_s) = (csv_path.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "train",
        csv,
        "--hard-mining",
        "--epochs",
        "1",
        "--hard-epochs",
        "1",
        "--rebalance-epochs",
        "1",
        "--hard-cap",
        "0.3",
        "--limit-train",
        "300",
        "--limit-validation",
        "200",
        "--out",
        out_s,
        "--quiet",
    ];
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "{stderr}");
    for phase in ["normal", "round 1 hard", "round 1 rebalance"] {
        assert!(stdout.contains(phase), "{phase} missing from {stdout}");
    }
    for folder in ["round0-normal", "round1-hard", "round1-rebalance"] {
        assert!(out.join(folder).join("metrics.csv").is_file(), "{folder}");
    }
    assert!(out.join("hard-mining.md").is_file() && out.join("hard-mining.png").is_file());
    assert!(stderr.contains("starting from the weights of"), "{stderr}");

    let data = ferrite_data::fer2013::load(&csv_path, Default::default())
        .unwrap()
        .store;
    let rows: Vec<usize> = std::fs::read_to_string(out.join("round1-hard-rows.txt"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|&r| data.split(r) == ferrite_data::Split::Training),
        "hard rows come from Training only"
    );
    let mut per_class = [0usize; 7];
    rows.iter()
        .for_each(|&r| per_class[data.label(r) as usize] += 1);
    let mined: usize = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("round 1: ")
                .and_then(|l| l.split(' ').next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap();
    let limit = (0.3 * mined as f64).ceil() as usize;
    assert!(
        per_class.iter().all(|&n| n <= limit),
        "{per_class:?} exceeds {limit} of {mined}"
    );

    // The mixed variant: hard examples oversampled within normal epochs, from a given model.
    let mixed = dir.path().join("mixed");
    let start = out.join("round0-normal").join("best.ferrite");
    let (ok, stdout, stderr) = run(&[
        "train",
        csv,
        "--hard-mining",
        "--mine-from",
        start.to_str().unwrap(),
        "--hard-mix",
        "0.5",
        "--hard-epochs",
        "1",
        "--rebalance-epochs",
        "1",
        "--limit-train",
        "300",
        "--limit-validation",
        "200",
        "--out",
        mixed.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("round 1 hard mixed at 50 %"), "{stdout}");
    assert!(
        !mixed.join("round0-normal").exists(),
        "--mine-from skips the first training"
    );
    let (ok, _, stderr) = run(&[
        "train",
        csv,
        "--hard-mining",
        "--hard-mix",
        "1.5",
        "--out",
        mixed.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("hard_mix must be in (0, 1)"),
        "{stderr}"
    );
}
