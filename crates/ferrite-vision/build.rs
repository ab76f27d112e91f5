//! Finds the SeetaFace frontal-face model inside the `rustface` package in Cargo's registry
//! and copies it to OUT_DIR, so the binary embeds it and a fresh clone needs no download.

use std::path::{Path, PathBuf};

const MODEL: &str = "seeta_fd_frontal_v1.0.bin";
const PACKAGE: &str = "rustface-0.1.6";

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

fn find_model() -> Option<PathBuf> {
    let sources = cargo_home().join("registry/src");
    std::fs::read_dir(sources)
        .ok()?
        .flatten()
        .map(|index| index.path().join(PACKAGE).join("model").join(MODEL))
        .find(|p| p.is_file())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let model = find_model().unwrap_or_else(|| {
        panic!(
            "could not find {PACKAGE}/model/{MODEL} under {}/registry/src; run `cargo fetch`",
            cargo_home().display()
        )
    });
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join(MODEL);
    std::fs::copy(&model, &out).unwrap_or_else(|e| panic!("copying {}: {e}", model.display()));
}
