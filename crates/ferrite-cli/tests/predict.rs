//! `ferrite predict` on pictures made from real FER2013 faces, and on bad files.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::prelude::Device;
use ferrite_data::{ClassSet, LoadOptions, Normalization, Split, fer2013};
use ferrite_models::{Architecture, ModelConfig, ModelMeta, SavedModel};
use image::imageops::FilterType;
use image::{GrayImage, Luma, imageops};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ferrite(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An untrained model: the pipeline, not the accuracy, is under test here.
fn write_model(path: &Path) {
    let config = ModelConfig::new(Architecture::MiniXception, 7);
    let model = SavedModel {
        network: config.init(&Device::flex()).unwrap(),
        meta: ModelMeta {
            config,
            classes: ClassSet::fer2013(),
            normalization: Normalization::MinusOneToOne,
            card: Default::default(),
        },
    };
    model.save(path).unwrap();
}

/// A PNG whose header claims `width`×`height` pixels, with (almost) no pixel data behind it.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn chunk(png: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        let body = [kind, data].concat();
        let mut crc = 0xFFFF_FFFFu32;
        for &b in &body {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&body);
        png.extend_from_slice(&(!crc).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr = [
        &width.to_be_bytes()[..],
        &height.to_be_bytes(),
        &[8, 0, 0, 0, 0],
    ]
    .concat();
    chunk(&mut png, b"IHDR", &ihdr);
    // A zlib stream holding one empty stored block.
    chunk(
        &mut png,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
        ],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn predict_finds_pasted_faces_and_reports_bad_files_without_failing() {
    let Some(csv) = ferrite_data::locate::shared_csv_or_skip(&root(), "predict on pasted faces")
    else {
        return;
    };
    let store = fer2013::load(&csv, LoadOptions::default()).unwrap().store;
    let dir = tempfile::tempdir().unwrap();
    let pictures = dir.path().join("pictures");
    std::fs::create_dir_all(&pictures).unwrap();
    // Three PublicTest faces, enlarged to 144 px, side by side on a 640×360 canvas.
    let public = store.indices_of(Split::PublicTest);
    let mut canvas = GrayImage::from_pixel(640, 360, Luma([120]));
    for (k, &i) in public.iter().skip(5).step_by(41).take(3).enumerate() {
        let face = GrayImage::from_raw(48, 48, store.image(i).to_vec()).unwrap();
        imageops::replace(
            &mut canvas,
            &imageops::resize(&face, 144, 144, FilterType::CatmullRom),
            40 + 200 * k as i64,
            100,
        );
    }
    canvas.save(pictures.join("three.png")).unwrap();
    GrayImage::from_pixel(320, 240, Luma([90]))
        .save(pictures.join("blank.png"))
        .unwrap();
    let bytes = std::fs::read(pictures.join("three.png")).unwrap();
    std::fs::write(pictures.join("truncated.png"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(pictures.join("empty.jpg"), b"").unwrap();
    std::fs::write(pictures.join("text.png"), b"not a picture at all").unwrap();
    std::fs::write(pictures.join("huge.png"), png_header_only(20_000, 20_000)).unwrap();
    let model = dir.path().join("m.ferrite");
    write_model(&model);
    let annotated = dir.path().join("annotated");

    let args = [
        "predict",
        pictures.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--annotate",
        annotated.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = ferrite(&args);
    assert!(ok, "{stderr}");
    let results: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let by_name = |name: &str| {
        results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["file"].as_str().unwrap().ends_with(name))
            .unwrap()
            .clone()
    };
    let three = by_name("three.png");
    let faces = three["faces"].as_array().unwrap();
    assert!(
        faces.len() >= 2,
        "found {} of 3 pasted faces: {three}",
        faces.len()
    );
    for face in faces {
        let probabilities: f64 = face["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_f64().unwrap())
            .sum();
        assert!((probabilities - 1.0).abs() < 1e-3);
        let x = face["box"]["x"].as_i64().unwrap();
        assert!(
            [40, 240, 440]
                .iter()
                .any(|&left| (left - 30..left + 144).contains(&x)),
            "box at x={x}"
        );
    }
    assert!(by_name("blank.png")["faces"].as_array().unwrap().is_empty());
    assert!(
        stderr.contains("no face found in") && stderr.contains("blank.png"),
        "{stderr}"
    );
    for bad in ["truncated.png", "empty.jpg", "text.png", "huge.png"] {
        let error = by_name(bad)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!error.is_empty(), "{bad} should be reported");
        assert!(
            stderr.contains(&format!("{bad}:")),
            "{bad} not named in {stderr}"
        );
    }
    let huge = by_name("huge.png")["error"].as_str().unwrap().to_string();
    assert!(
        huge.contains("20000x20000") && huge.contains("--max-pixels"),
        "{huge}"
    );
    assert!(annotated.join("three.annotated.png").is_file());

    let (ok, csv_out, _) = ferrite(&[
        "predict",
        pictures.join("three.png").to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert!(ok);
    assert!(
        csv_out.starts_with("file,face,x,y,width,height,emotion,confidence,p_angry"),
        "{csv_out}"
    );
    assert_eq!(csv_out.lines().count(), 1 + faces.len());

    // Without --model, the default model compiled into the binary classifies.
    let (ok, stdout, stderr) = ferrite(&["predict", pictures.join("three.png").to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let results: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(results[0]["faces"].as_array().unwrap().len(), faces.len());
}
