//! Every kind of bad FER2013 input gives an error naming file, line and field;
//! `skip_bad_rows` loads the rest and says what it skipped.

use std::io::Write;
use std::path::Path;

use ferrite_data::{DataError, LoadOptions, RowProblem, Split, fer2013};

const HEADER: &str = "emotion,pixels,Usage";

fn pixels(value: u8) -> String {
    vec![value.to_string(); 2304].join(" ")
}

fn row(label: &str, value: u8, usage: &str) -> String {
    format!("{label},{},{usage}", pixels(value))
}

fn csv(rows: &[String]) -> String {
    let mut text = String::from(HEADER);
    for r in rows {
        text.push('\n');
        text.push_str(r);
    }
    text.push('\n');
    text
}

fn strict(text: &str) -> Result<fer2013::Loaded, DataError> {
    fer2013::parse(
        text.as_bytes(),
        Path::new("fer.csv"),
        LoadOptions::default(),
    )
}

fn error_of(bad_row: String) -> String {
    let text = csv(&[row("3", 1, "Training"), bad_row, row("0", 2, "PublicTest")]);
    strict(&text).unwrap_err().to_string()
}

#[test]
fn good_rows_load_with_labels_splits_and_pixels() {
    let text = csv(&[
        row("3", 1, "Training"),
        row("6", 255, "PublicTest"),
        row("0", 0, "PrivateTest"),
    ]);
    let loaded = strict(&text).unwrap();
    let store = &loaded.store;
    assert_eq!(store.len(), 3);
    assert_eq!(store.labels(), [3, 6, 0]);
    assert_eq!(store.split(1), Split::PublicTest);
    assert_eq!(store.split(2), Split::PrivateTest);
    assert!(store.image(1).iter().all(|&p| p == 255));
    assert_eq!(store.source_row(2), 2);
}

#[test]
fn crlf_quotes_reordered_columns_and_missing_usage_are_accepted() {
    let text = format!("emotion, Usage, pixels\r\n3,Training,\"{}\"\r\n", pixels(4));
    let store = strict(&text).unwrap().store;
    assert_eq!(
        (store.label(0), store.split(0), store.image(0)[2303]),
        (3, Split::Training, 4)
    );
    let text = format!("emotion,pixels\n2,{}\n", pixels(5));
    assert_eq!(strict(&text).unwrap().store.split(0), Split::Training);
}

#[test]
fn wrong_column_count() {
    assert_eq!(
        error_of(format!("3,{},Training,extra", pixels(1))),
        "fer.csv:3: field `row`: found 4 columns, expected 3"
    );
    assert_eq!(
        error_of("3".into()),
        "fer.csv:3: field `row`: found 1 columns, expected 3"
    );
}

#[test]
fn non_integer_pixel() {
    let mut tokens = vec!["7".to_string(); 2304];
    tokens[100] = "7.5".into();
    let err = error_of(format!("3,{},Training", tokens.join(" ")));
    assert_eq!(
        err,
        "fer.csv:3: field `pixels`: pixel 100: \"7.5\" is not an integer"
    );
    tokens[100] = "-3".into();
    assert!(
        error_of(format!("3,{},Training", tokens.join(" ")))
            .contains("pixel 100: \"-3\" is not an integer")
    );
}

#[test]
fn out_of_range_pixel() {
    let mut tokens = vec!["7".to_string(); 2304];
    tokens[2303] = "256".into();
    let err = error_of(format!("3,{},Training", tokens.join(" ")));
    assert_eq!(
        err,
        "fer.csv:3: field `pixels`: pixel 2303: 256 is outside 0-255"
    );
    tokens[0] = "99999999999999999999999".into();
    assert!(error_of(format!("3,{},Training", tokens.join(" "))).contains("pixel 0:"));
}

#[test]
fn wrong_pixel_count() {
    let short = vec!["7"; 2303].join(" ");
    let err = error_of(format!("3,{short},Training"));
    assert_eq!(
        err,
        "fer.csv:3: field `pixels`: found 2303 pixels, expected 2304 (48x48)"
    );
    let long = vec!["7"; 2305].join(" ");
    assert!(error_of(format!("3,{long},Training")).contains("found 2305 pixels"));
    assert!(error_of("3,,Training".into()).contains("found 0 pixels"));
}

#[test]
fn label_outside_0_to_6() {
    assert_eq!(
        error_of(row("7", 1, "Training")),
        "fer.csv:3: field `emotion`: label 7 is outside 0-6"
    );
    assert_eq!(
        error_of(row("happy", 1, "Training")),
        "fer.csv:3: field `emotion`: \"happy\" is not an integer"
    );
}

#[test]
fn unknown_usage() {
    assert_eq!(
        error_of(row("1", 1, "Validation")),
        "fer.csv:3: field `Usage`: unknown Usage \"Validation\"; expected Training, PublicTest or PrivateTest"
    );
}

#[test]
fn empty_file_header_only_and_bad_header() {
    assert!(matches!(strict(""), Err(DataError::Empty { .. })));
    assert!(matches!(strict("\n \n"), Err(DataError::Empty { .. })));
    assert!(matches!(
        strict("emotion,pixels,Usage\n"),
        Err(DataError::NoRows { .. })
    ));
    let err = strict("label,image\n1,2\n").unwrap_err().to_string();
    assert!(
        err.starts_with("fer.csv:1: header") && err.contains("no `emotion` column"),
        "{err}"
    );
}

#[test]
fn extra_columns_are_fine_and_too_many_are_a_header_error() {
    let text = format!(
        "id,a,b,c,d,e,f,g,h,emotion,pixels,Usage\n0,,,,,,,,,4,{},Training\n",
        pixels(3)
    );
    assert_eq!(strict(&text).unwrap().store.labels(), [4]);
    let wide = format!("{}emotion,pixels\n", "x,".repeat(20));
    let err = strict(&wide).unwrap_err().to_string();
    assert!(err.contains("22 columns; at most 16"), "{err}");
}

#[test]
fn blank_lines_keep_line_numbers_true_to_the_file() {
    let text = format!(
        "{HEADER}\n\n{}\n\n{}\n",
        row("1", 1, "Training"),
        row("9", 1, "Training")
    );
    let err = strict(&text).unwrap_err().to_string();
    assert!(err.starts_with("fer.csv:5:"), "{err}");
}

#[test]
fn skip_bad_rows_loads_the_rest_and_reports_why() {
    let text = csv(&[
        row("3", 1, "Training"),
        row("7", 1, "Training"),
        format!("3,{},Training", ["1"; 10].join(" ")),
        row("2", 1, "Nope"),
        row("4", 9, "PublicTest"),
    ]);
    let options = LoadOptions {
        skip_bad_rows: true,
    };
    let loaded = fer2013::parse(text.as_bytes(), Path::new("fer.csv"), options).unwrap();
    assert_eq!(loaded.store.len(), 2);
    assert_eq!(loaded.store.labels(), [3, 4]);
    // Source rows keep the file position, so FER+ still joins correctly.
    assert_eq!(loaded.store.source_row(1), 4);
    let lines: Vec<usize> = loaded.skipped.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 4, 5]);
    assert!(matches!(
        loaded.skipped[1].problem,
        RowProblem::PixelCount { found: 10, .. }
    ));
    assert_eq!(
        loaded.skipped_summary(),
        "1 label out of range, 1 wrong pixel count, 1 unknown Usage"
    );
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn gzip_loads_and_truncated_gzip_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = csv(&[row("3", 1, "Training"), row("5", 2, "PublicTest")]);
    let compressed = gzip(&text);
    let good = dir.path().join("fer2013.csv.gz");
    std::fs::write(&good, &compressed).unwrap();
    assert_eq!(
        fer2013::load(&good, LoadOptions::default())
            .unwrap()
            .store
            .labels(),
        [3, 5]
    );

    let cut = dir.path().join("cut.csv.gz");
    std::fs::write(&cut, &compressed[..compressed.len() / 2]).unwrap();
    let err = fer2013::load(&cut, LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("cut.csv.gz: gzip stream is truncated"),
        "{err}"
    );
}

#[test]
fn missing_file_is_named() {
    let err = fer2013::load(
        Path::new("/nonexistent/fer2013.csv"),
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("/nonexistent/fer2013.csv:"),
        "{err}"
    );
}
