//! Detection and classification on real faces: FER2013 faces pasted at known places on a
//! larger canvas (SKIP when the data is absent).

use std::path::Path;

use ferrite_data::locate::shared_csv_or_skip;
use ferrite_data::{FaceStore, LoadOptions, Split, fer2013};
use ferrite_vision::{DetectorConfig, FaceDetector, SeetaDetector};
use image::imageops::FilterType;
use image::{GrayImage, Luma, imageops};

fn store(test: &str) -> Option<FaceStore> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Some(
        fer2013::load(&shared_csv_or_skip(&root, test)?, LoadOptions::default())
            .unwrap()
            .store,
    )
}

/// Face `i` enlarged to `side` and pasted with its top-left corner at (x, y) on a grey canvas.
fn canvas_with(
    store: &FaceStore,
    faces: &[(usize, i64, i64)],
    side: u32,
    width: u32,
    height: u32,
) -> GrayImage {
    let mut canvas = GrayImage::from_pixel(width, height, Luma([120]));
    for &(i, x, y) in faces {
        let face = GrayImage::from_raw(48, 48, store.image(i).to_vec()).unwrap();
        imageops::replace(
            &mut canvas,
            &imageops::resize(&face, side, side, FilterType::CatmullRom),
            x,
            y,
        );
    }
    canvas
}

#[test]
fn seeta_finds_most_fer_faces_pasted_on_a_canvas_at_their_places() {
    let Some(store) = store("face detection on FER2013 faces") else {
        return;
    };
    let mut detector = SeetaDetector::new(DetectorConfig::default()).unwrap();
    let public: Vec<usize> = store
        .indices_of(Split::PublicTest)
        .into_iter()
        .step_by(37)
        .take(40)
        .collect();
    let mut found = 0;
    for &i in &public {
        let picture = canvas_with(&store, &[(i, 150, 100)], 144, 480, 360);
        let hits = detector.detect(&picture);
        let centred = hits.iter().any(|d| {
            let (cx, cy) = (
                d.bbox.x + d.bbox.width as i32 / 2,
                d.bbox.y + d.bbox.height as i32 / 2,
            );
            (150..294).contains(&cx) && (100..244).contains(&cy)
        });
        found += centred as usize;
    }
    eprintln!("found {found} of {} faces", public.len());
    assert!(
        found * 10 >= public.len() * 7,
        "found {found} of {}",
        public.len()
    );
}

/// The shipped default model, read from the repository.
fn default_model() -> ferrite_models::SavedModel {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default.ferrite");
    ferrite_models::SavedModel::load(&path, &burn::prelude::Device::flex()).unwrap()
}

#[test]
fn classification_of_faces_matches_evaluation_and_survives_detection() {
    let Some(store) = store("classification of pasted faces") else {
        return;
    };
    let device = burn::prelude::Device::flex();
    let model = default_model();
    let rows: Vec<usize> = store
        .indices_of(Split::PublicTest)
        .into_iter()
        .step_by(53)
        .take(30)
        .collect();
    let batch = ferrite_data::BatchConfig {
        input_side: model.meta.config.input_side,
        normalization: model.meta.normalization,
        ..ferrite_data::BatchConfig::new(64)
    };
    let network = burn::module::Module::valid(&model.network);
    let evaluated = ferrite_train::metrics::predict_probabilities(
        &network,
        &store,
        &rows,
        &batch,
        ferrite_train::Tta::None,
        &device,
    );
    let mut analyzer = ferrite_vision::Analyzer::new(model, device);

    // The same 48×48 faces through the inference path give exactly eval's probabilities.
    let faces: Vec<Vec<u8>> = rows.iter().map(|&i| store.image(i).to_vec()).collect();
    let classified: Vec<f32> = analyzer.classify(&faces).concat();
    assert_eq!(classified, evaluated);

    // Found on a canvas and cropped by the detector's box, most faces keep eval's label.
    analyzer.margins = ferrite_vision::Margins {
        horizontal: 0,
        vertical: 0,
    };
    let mut detector = SeetaDetector::new(DetectorConfig::default()).unwrap();
    let k = analyzer.classes().len();
    let expected = ferrite_train::metrics::argmax_rows(&evaluated, k);
    let (mut found, mut agree) = (0, 0);
    for (n, &i) in rows.iter().enumerate() {
        let picture = canvas_with(&store, &[(i, 100, 60)], 144, 360, 270);
        if let Some(face) = analyzer.analyze(&mut detector, &picture).first() {
            found += 1;
            agree += (face.emotion == analyzer.classes().name(expected[n] as usize)) as usize;
        }
    }
    eprintln!("{agree} of {found} detected faces keep eval's label");
    assert!(
        found >= rows.len() * 7 / 10,
        "found {found} of {}",
        rows.len()
    );
    assert!(agree * 2 >= found, "{agree} of {found} agree");
}
