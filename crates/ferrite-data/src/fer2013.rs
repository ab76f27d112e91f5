//! The Kaggle FER2013 CSV: `emotion,pixels,Usage`, 2304 space-separated pixels per row,
//! plain or gzip-compressed.
//!
//! Loading reads (and inflates) the whole file, cuts it into lines and parses chunks of lines
//! in parallel into one compact [`FaceStore`]. Columns are found by name, so the
//! `emotion, Usage, pixels` order of Kaggle's `icml_face_data.csv` loads too; a file without a
//! Usage column (Kaggle's `train.csv`) is all Training.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc;

use flate2::read::MultiGzDecoder;
use rayon::prelude::*;

use crate::{ClassSet, DataError, FaceStore, IMAGE_PIXELS, RowError, RowProblem, Split};

/// How strict to be with bad rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Load the good rows and report the bad ones instead of failing on the first.
    pub skip_bad_rows: bool,
}

/// A row left out under `skip_bad_rows`.
pub type SkippedRow = RowError;

/// The result of a load: the faces, and the rows skipped (empty unless `skip_bad_rows`).
#[derive(Debug)]
pub struct Loaded {
    pub store: FaceStore,
    pub skipped: Vec<SkippedRow>,
}

impl Loaded {
    /// "3 wrong pixel count, 1 unknown Usage": skipped rows grouped by what was wrong.
    pub fn skipped_summary(&self) -> String {
        let mut kinds: Vec<(&str, usize)> = Vec::new();
        for row in &self.skipped {
            match kinds.iter_mut().find(|(k, _)| *k == row.problem.kind()) {
                Some((_, n)) => *n += 1,
                None => kinds.push((row.problem.kind(), 1)),
            }
        }
        kinds
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Loads `fer2013.csv` or `fer2013.csv.gz` (gzip is recognised by its magic bytes).
///
/// A reader thread inflates the file block by block while this thread parses the complete
/// lines of each block in parallel, so inflating and parsing overlap and the inflated text
/// (290 MB for the full file) is never held whole.
pub fn load(path: &Path, options: LoadOptions) -> Result<Loaded, DataError> {
    let io_error = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_error)?;
    let mut magic = [0u8; 2];
    let gzip = file.read(&mut magic).map_err(io_error)? == 2 && magic == GZIP_MAGIC;
    file.seek(SeekFrom::Start(0)).map_err(io_error)?;
    let reader: Box<dyn Read + Send> = if gzip {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file)))
    } else {
        Box::new(file)
    };
    let (sender, blocks) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
    let reader_thread = std::thread::spawn(move || read_blocks(reader, &sender));
    let mut parser = Parser::new(path, options);
    for block in blocks {
        let block = block.map_err(|source| match gzip {
            true => DataError::Gzip {
                path: path.to_path_buf(),
                source,
            },
            false => io_error(source),
        })?;
        parser.feed(&block)?;
    }
    // The reader only ends by sending an error (handled above) or reaching the end.
    let _ = reader_thread.join();
    parser.finish()
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const BLOCK_BYTES: usize = 4 << 20;

/// Sends the reader's bytes in blocks until the end, an error, or the receiver hanging up.
fn read_blocks(
    mut reader: Box<dyn Read + Send>,
    sender: &mpsc::SyncSender<std::io::Result<Vec<u8>>>,
) {
    loop {
        let mut block = Vec::with_capacity(BLOCK_BYTES);
        match reader
            .by_ref()
            .take(BLOCK_BYTES as u64)
            .read_to_end(&mut block)
        {
            Ok(0) => return,
            Ok(_) => {
                if sender.send(Ok(block)).is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = sender.send(Err(error));
                return;
            }
        }
    }
}

/// Reads a whole file, inflating it if it is gzip.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let io_error = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io_error)?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut inflated = Vec::with_capacity(raw.len() * 4);
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut inflated)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(inflated)
}

/// Parses CSV bytes already in memory; `path` is only used to name the file in errors.
pub fn parse(bytes: &[u8], path: &Path, options: LoadOptions) -> Result<Loaded, DataError> {
    let mut parser = Parser::new(path, options);
    parser.feed(bytes)?;
    parser.finish()
}

/// Rows are split into a fixed array of fields; FER2013 files have 2 or 3 columns.
const MAX_COLUMNS: usize = 16;

/// Where the named columns sit in a row.
struct Columns {
    count: usize,
    emotion: usize,
    pixels: usize,
    usage: Option<usize>,
}

impl Columns {
    fn from_header(header: &[u8], path: &Path) -> Result<Self, DataError> {
        let text = String::from_utf8_lossy(header).into_owned();
        let names: Vec<String> = text
            .split(',')
            .map(|f| clean(f).to_ascii_lowercase())
            .collect();
        let find = |name: &str| names.iter().position(|n| n == name);
        let problem = |problem: &str| DataError::Header {
            path: path.to_path_buf(),
            found: text.clone(),
            problem: problem.to_string(),
        };
        if names.len() > MAX_COLUMNS {
            return Err(problem(&format!(
                "{} columns; at most {MAX_COLUMNS} are supported",
                names.len()
            )));
        }
        Ok(Columns {
            count: names.len(),
            emotion: find("emotion").ok_or_else(|| problem("no `emotion` column"))?,
            pixels: find("pixels").ok_or_else(|| problem("no `pixels` column"))?,
            usage: find("usage"),
        })
    }
}

fn clean(field: &str) -> &str {
    field.trim().trim_matches('"').trim()
}

fn clean_bytes(field: &[u8]) -> &[u8] {
    let field = field.trim_ascii();
    let field = field.strip_prefix(b"\"").unwrap_or(field);
    let field = field.strip_suffix(b"\"").unwrap_or(field);
    field.trim_ascii()
}

/// One non-empty data line: its 1-based line number in the file, its 0-based data-row
/// ordinal (the position FER+ joins on) and its bytes.
struct Line<'a> {
    number: usize,
    row: u32,
    bytes: &'a [u8],
}

/// Incremental CSV parsing: fed blocks of any size, it parses each complete line once and
/// keeps the partial last line for the next block.
struct Parser<'p> {
    path: &'p Path,
    options: LoadOptions,
    columns: Option<Columns>,
    /// Newlines consumed so far: the next line is number `lines_seen + 1`.
    lines_seen: usize,
    data_rows: u32,
    carry: Vec<u8>,
    chunks: Vec<Chunk>,
}

impl<'p> Parser<'p> {
    fn new(path: &'p Path, options: LoadOptions) -> Self {
        Self {
            path,
            options,
            columns: None,
            lines_seen: 0,
            data_rows: 0,
            carry: Vec::new(),
            chunks: Vec::new(),
        }
    }

    fn feed(&mut self, block: &[u8]) -> Result<(), DataError> {
        self.carry.extend_from_slice(block);
        let Some(last_newline) = memchr::memrchr(b'\n', &self.carry) else {
            return Ok(());
        };
        let complete = std::mem::take(&mut self.carry);
        let result = self.parse_lines(&complete[..last_newline]);
        self.lines_seen += 1; // the newline ending the block's last complete line
        self.carry = complete[last_newline + 1..].to_vec();
        result
    }

    fn finish(mut self) -> Result<Loaded, DataError> {
        let rest = std::mem::take(&mut self.carry);
        self.parse_lines(&rest)?;
        let path = self.path.to_path_buf();
        if self.columns.is_none() {
            return Err(DataError::Empty { path });
        }
        if self.data_rows == 0 {
            return Err(DataError::NoRows { path });
        }
        let n: usize = self.chunks.iter().map(|c| c.labels.len()).sum();
        let mut pixels = Vec::with_capacity(n * IMAGE_PIXELS);
        let (mut labels, mut splits, mut rows, mut skipped) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::new(),
        );
        for chunk in self.chunks {
            pixels.extend_from_slice(&chunk.pixels);
            labels.extend_from_slice(&chunk.labels);
            splits.extend_from_slice(&chunk.splits);
            rows.extend_from_slice(&chunk.rows);
            skipped.extend(chunk.errors);
        }
        let store = FaceStore::new(ClassSet::fer2013(), pixels, labels, splits, rows);
        Ok(Loaded { store, skipped })
    }

    /// Parses `text` (whole lines, without the final newline), in parallel.
    fn parse_lines(&mut self, text: &[u8]) -> Result<(), DataError> {
        let mut lines = self.split_lines(text);
        if self.columns.is_none() && !lines.is_empty() {
            let header = lines.remove(0);
            self.columns = Some(Columns::from_header(header.bytes, self.path)?);
        }
        let Some(columns) = &self.columns else {
            return Ok(());
        };
        // Chunks big enough to amortise the per-task cost, small enough to balance two cores.
        let keep_going = self.options.skip_bad_rows;
        let chunks: Vec<Chunk> = lines
            .par_chunks(128)
            .map(|chunk| Chunk::parse(chunk, columns, keep_going))
            .collect();
        for chunk in chunks {
            if let (false, Some(first)) = (keep_going, chunk.errors.first()) {
                return Err(DataError::Row {
                    path: self.path.to_path_buf(),
                    row: first.clone(),
                });
            }
            self.chunks.push(chunk);
        }
        Ok(())
    }

    /// Non-empty lines (LF or CRLF) of `text`, numbered on from the lines already seen;
    /// the first non-empty line of the file is the header and not a data row.
    fn split_lines<'t>(&mut self, text: &'t [u8]) -> Vec<Line<'t>> {
        let mut lines = Vec::with_capacity(text.len() / 4096 + 1);
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len()));
        let mut newlines = 0;
        for end in ends {
            let line = &text[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let number = self.lines_seen + newlines + 1;
            if end < text.len() {
                newlines += 1;
            }
            start = end + 1;
            if line.trim_ascii().is_empty() {
                continue;
            }
            let is_header = self.columns.is_none() && lines.is_empty();
            let row = self.data_rows;
            if !is_header {
                self.data_rows += 1;
            }
            lines.push(Line {
                number,
                row,
                bytes: line,
            });
        }
        self.lines_seen += newlines;
        lines
    }
}

/// The parsed rows of one chunk of lines, in order.
#[derive(Default)]
struct Chunk {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    splits: Vec<Split>,
    rows: Vec<u32>,
    errors: Vec<RowError>,
}

impl Chunk {
    fn parse(lines: &[Line], columns: &Columns, keep_going: bool) -> Chunk {
        let mut chunk = Chunk {
            pixels: Vec::with_capacity(lines.len() * IMAGE_PIXELS),
            ..Chunk::default()
        };
        let mut image = [0u8; IMAGE_PIXELS];
        for line in lines {
            match parse_row(line, columns, &mut image) {
                Ok((label, split)) => {
                    chunk.pixels.extend_from_slice(&image);
                    chunk.labels.push(label);
                    chunk.splits.push(split);
                    chunk.rows.push(line.row);
                }
                Err(problem) => {
                    chunk.errors.push(problem);
                    if !keep_going {
                        break;
                    }
                }
            }
        }
        chunk
    }
}

fn parse_row(
    line: &Line,
    columns: &Columns,
    image: &mut [u8; IMAGE_PIXELS],
) -> Result<(u8, Split), RowError> {
    let error = |field, problem| RowError {
        line: line.number,
        field,
        problem,
    };
    let mut fields = [&[][..]; MAX_COLUMNS];
    let mut found = 0;
    for field in line.bytes.split(|&b| b == b',') {
        if found < fields.len() {
            fields[found] = field;
        }
        found += 1;
    }
    if found != columns.count {
        let problem = RowProblem::ColumnCount {
            found,
            expected: columns.count,
        };
        return Err(error("row", problem));
    }
    let label =
        parse_label(clean_bytes(fields[columns.emotion])).map_err(|p| error("emotion", p))?;
    let split = match columns.usage {
        Some(usage) => parse_usage(clean_bytes(fields[usage])).map_err(|p| error("Usage", p))?,
        None => Split::Training,
    };
    parse_pixels(clean_bytes(fields[columns.pixels]), image).map_err(|p| error("pixels", p))?;
    Ok((label, split))
}

fn parse_label(field: &[u8]) -> Result<u8, RowProblem> {
    let value = parse_integer(field).ok_or_else(|| RowProblem::NotInteger {
        token: String::from_utf8_lossy(field).into_owned(),
        position: None,
    })?;
    let classes = crate::classes::FER2013_CLASSES.len();
    if value >= classes as u64 {
        return Err(RowProblem::LabelOutOfRange { value, classes });
    }
    Ok(value as u8)
}

fn parse_integer(field: &[u8]) -> Option<u64> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(field.iter().fold(0u64, |v, &d| {
        v.saturating_mul(10).saturating_add((d - b'0') as u64)
    }))
}

fn parse_usage(field: &[u8]) -> Result<Split, RowProblem> {
    match field {
        b"Training" => Ok(Split::Training),
        b"PublicTest" => Ok(Split::PublicTest),
        b"PrivateTest" => Ok(Split::PrivateTest),
        other => Err(RowProblem::UnknownUsage {
            token: String::from_utf8_lossy(other).into_owned(),
        }),
    }
}

/// The hot loop of loading: 83 million pixel tokens for the full file. One pass over the
/// bytes; only when something is wrong does [`pixel_token_problem`] look again to explain it.
fn parse_pixels(field: &[u8], image: &mut [u8; IMAGE_PIXELS]) -> Result<(), RowProblem> {
    let mut count = 0usize;
    let mut value = 0u32;
    let mut in_token = false;
    for &byte in field {
        match byte {
            b'0'..=b'9' => {
                // Cap so a 40-digit token cannot overflow; anything over 255 is an error anyway.
                value = (value * 10 + (byte - b'0') as u32).min(100_000);
                in_token = true;
            }
            b' ' | b'\t' => {
                if in_token {
                    store_pixel(image, count, value, field)?;
                    count += 1;
                    value = 0;
                    in_token = false;
                }
            }
            _ => return Err(pixel_token_problem(field)),
        }
    }
    if in_token {
        store_pixel(image, count, value, field)?;
        count += 1;
    }
    if count != IMAGE_PIXELS {
        return Err(RowProblem::PixelCount {
            found: count,
            expected: IMAGE_PIXELS,
        });
    }
    Ok(())
}

#[inline]
fn store_pixel(
    image: &mut [u8; IMAGE_PIXELS],
    index: usize,
    value: u32,
    field: &[u8],
) -> Result<(), RowProblem> {
    if value > 255 {
        return Err(pixel_token_problem(field));
    }
    if let Some(slot) = image.get_mut(index) {
        *slot = value as u8;
    }
    Ok(())
}

/// Explains the first bad token of a pixel field: not an integer, or out of 0-255.
fn pixel_token_problem(field: &[u8]) -> RowProblem {
    let separator = |b: &u8| *b == b' ' || *b == b'\t';
    for (position, token) in field.split(separator).filter(|t| !t.is_empty()).enumerate() {
        match parse_integer(token) {
            None => {
                return RowProblem::NotInteger {
                    token: String::from_utf8_lossy(token).into_owned(),
                    position: Some(position),
                };
            }
            Some(value) if value > 255 => return RowProblem::PixelOutOfRange { value, position },
            Some(_) => {}
        }
    }
    // Only reached if the fast loop and this one disagree; report the field rather than panic.
    RowProblem::NotInteger {
        token: String::from_utf8_lossy(field).into_owned(),
        position: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let row = |label: u8, usage: &str| {
            format!(
                "{label},{},{usage}",
                vec![label.to_string(); IMAGE_PIXELS].join(" ")
            )
        };
        format!(
            "emotion,pixels,Usage\r\n{}\r\n\r\n{}\n{}",
            row(1, "Training"),
            row(2, "PublicTest"),
            row(3, "Training")
        )
    }

    /// Feeding the bytes in blocks of any size gives the same store and the same line numbers.
    #[test]
    fn blocks_of_any_size_parse_like_one() {
        let text = sample();
        let whole = parse(text.as_bytes(), Path::new("f.csv"), LoadOptions::default()).unwrap();
        for block in [1, 7, 100, 4609, 9999] {
            let mut parser = Parser::new(Path::new("f.csv"), LoadOptions::default());
            for piece in text.as_bytes().chunks(block) {
                parser.feed(piece).unwrap();
            }
            assert_eq!(
                parser.finish().unwrap().store,
                whole.store,
                "block size {block}"
            );
        }
        let bad = text.replace("3,3 3", "9,3 3");
        for block in [1, 50, 100_000] {
            let mut parser = Parser::new(Path::new("f.csv"), LoadOptions::default());
            let result = bad
                .as_bytes()
                .chunks(block)
                .try_for_each(|piece| parser.feed(piece));
            let err = result
                .and_then(|_| parser.finish().map(|_| ()))
                .unwrap_err();
            assert!(
                err.to_string().starts_with("f.csv:5: field `emotion`"),
                "block {block}: {err}"
            );
        }
    }
}
