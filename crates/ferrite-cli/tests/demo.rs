//! `ferrite demo`: the README's main job, with nothing but the binary.

use std::process::Command;

#[test]
fn demo_finds_most_of_the_29_faces_and_writes_picture_and_json() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["demo", "--out"])
        .arg(out_dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = std::fs::read_to_string(out_dir.path().join("group-photo.json")).unwrap();
    let faces: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(
        faces.len() >= 25,
        "found {} of the photo's 29 faces",
        faces.len()
    );
    assert!(
        stdout.contains(&format!("{} faces found", faces.len())),
        "{stdout}"
    );
    for face in &faces {
        let total: f64 = face["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-3, "{face}");
    }
    let annotated = image::open(out_dir.path().join("group-photo.annotated.png")).unwrap();
    assert_eq!((annotated.width(), annotated.height()), (1666, 1136));
}
