//! Finds the SeetaFace frontal-face model and the sample group photo (`test.png`, the 1927
//! Solvay conference) inside the `rustface` package in Cargo's registry and copies both to
//! OUT_DIR, so the binary embeds them and a fresh clone needs no download.

use std::path::{Path, PathBuf};

const MODEL: &str = "seeta_fd_frontal_v1.0.bin";
const PHOTO: &str = "test.png";
const PACKAGE: &str = "rustface-0.1.7";

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

/// `relative` inside the rustface package of any registry index.
fn find_in_package(relative: &str) -> Option<PathBuf> {
    let sources = cargo_home().join("registry/src");
    std::fs::read_dir(sources)
        .ok()?
        .flatten()
        .map(|index| index.path().join(PACKAGE).join(relative))
        .find(|p| p.is_file())
}

fn copy_to_out_dir(relative: &str, name: &str) {
    let source = find_in_package(relative).unwrap_or_else(|| {
        panic!(
            "could not find {PACKAGE}/{relative} under {}/registry/src; run `cargo fetch`",
            cargo_home().display()
        )
    });
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join(name);
    std::fs::copy(&source, &out).unwrap_or_else(|e| panic!("copying {}: {e}", source.display()));
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    copy_to_out_dir(&format!("model/{MODEL}"), MODEL);
    copy_to_out_dir(PHOTO, "group-photo.png");
}
