//! `ferrite data inspect` as a user runs it.

use std::path::Path;
use std::process::Command;

fn ferrite(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn row(label: u8, value: u8, usage: &str) -> String {
    format!(
        "{label},{},{usage}\n",
        vec![value.to_string(); 2304].join(" ")
    )
}

#[test]
fn bad_row_stops_with_its_location_and_skip_bad_rows_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("emotion,pixels,Usage\n");
    for k in 0..14u8 {
        csv += &row(k % 7, k, if k < 10 { "Training" } else { "PublicTest" });
    }
    csv += "9,1 2 3,Training\n";
    std::fs::write(dir.path().join("small.csv"), csv).unwrap();

    let (ok, _, stderr) = ferrite(&["data", "inspect", "small.csv"], dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("small.csv:16: field `emotion`: label 9 is outside 0-6"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = ferrite(
        &[
            "data",
            "inspect",
            "small.csv",
            "--skip-bad-rows",
            "--augment-preview",
            "--exclude",
            "disgust",
        ],
        dir.path(),
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("skipped 1 bad rows: 1 label out of range"),
        "{stderr}"
    );
    assert!(stdout.contains("Training"), "{stdout}");
    assert!(!stdout.contains("Disgust"), "{stdout}");
    assert!(dir.path().join("runs/inspect/contact-sheet.png").is_file());
    assert!(
        dir.path()
            .join("runs/inspect/augment-preview.png")
            .is_file()
    );
}

#[test]
fn shared_data_counts_match_the_data_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let Some(csv) = ferrite_data::locate::shared_csv_or_skip(&root, "data inspect on shared data")
    else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let args = [
        "data",
        "inspect",
        csv.to_str().unwrap(),
        "--json",
        "--out",
        out.path().to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = ferrite(&args, &root);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["counts"]["Training"],
        serde_json::json!([3995, 436, 4097, 7215, 4830, 3171, 4965])
    );
    assert_eq!(
        report["counts"]["PublicTest"],
        serde_json::json!([467, 56, 496, 895, 653, 415, 607])
    );
    assert_eq!(report["constant_images"].as_array().unwrap().len(), 12);
}
