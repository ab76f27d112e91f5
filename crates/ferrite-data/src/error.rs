use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while reading face data. Each variant names the file and,
/// for CSV rows, the line and field, so a user can fix the input.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: gzip stream is truncated or corrupt ({source})", path = .path.display())]
    Gzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: file is empty", path = .path.display())]
    Empty { path: PathBuf },
    #[error("{path}: header has no data rows after it", path = .path.display())]
    NoRows { path: PathBuf },
    #[error("{path}:1: header {found:?}: {problem}", path = .path.display())]
    Header {
        path: PathBuf,
        found: String,
        problem: String,
    },
    #[error("{path}:{row}", path = .path.display())]
    Row { path: PathBuf, row: RowError },
    #[error("{path}: cannot read image: {message}", path = .path.display())]
    Image { path: PathBuf, message: String },
    #[error("{path}: {message}", path = .path.display())]
    Layout { path: PathBuf, message: String },
    #[error(
        "FER+ has {ferplus} rows but the FER2013 data has {fer2013}; FER+ joins by row position, so both must cover the same rows"
    )]
    FerPlusLength { ferplus: usize, fer2013: usize },
    #[error("unknown emotion {name:?}; known: {known}")]
    UnknownClass { name: String, known: String },
    #[error("bad class option {spec:?}: {problem}")]
    ClassSpec { spec: String, problem: String },
    #[error("unknown split {name:?}; use Training, PublicTest or PrivateTest")]
    UnknownSplit { name: String },
    #[error(
        "refusing to use PrivateTest for {purpose}: it is the final, untouched test split; tune on PublicTest"
    )]
    PrivateTestForbidden { purpose: &'static str },
    #[error("the {what} selection is empty: {hint}")]
    EmptySelection { what: &'static str, hint: String },
}

/// A bad CSV row: its 1-based line number, the column, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    pub field: &'static str,
    pub problem: RowProblem,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: field `{}`: {}", self.line, self.field, self.problem)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowProblem {
    ColumnCount {
        found: usize,
        expected: usize,
    },
    NotInteger {
        token: String,
        position: Option<usize>,
    },
    PixelOutOfRange {
        value: u64,
        position: usize,
    },
    PixelCount {
        found: usize,
        expected: usize,
    },
    LabelOutOfRange {
        value: u64,
        classes: usize,
    },
    UnknownUsage {
        token: String,
    },
}

impl RowProblem {
    /// A short category, used to group skipped rows in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ColumnCount { .. } => "wrong column count",
            Self::NotInteger { .. } => "not an integer",
            Self::PixelOutOfRange { .. } => "pixel out of range",
            Self::PixelCount { .. } => "wrong pixel count",
            Self::LabelOutOfRange { .. } => "label out of range",
            Self::UnknownUsage { .. } => "unknown Usage",
        }
    }
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ColumnCount { found, expected } => {
                write!(f, "found {found} columns, expected {expected}")
            }
            Self::NotInteger {
                token,
                position: Some(p),
            } => {
                write!(f, "pixel {p}: {token:?} is not an integer")
            }
            Self::NotInteger {
                token,
                position: None,
            } => {
                write!(f, "{token:?} is not an integer")
            }
            Self::PixelOutOfRange { value, position } => {
                write!(f, "pixel {position}: {value} is outside 0-255")
            }
            Self::PixelCount { found, expected } => {
                write!(f, "found {found} pixels, expected {expected} (48x48)")
            }
            Self::LabelOutOfRange { value, classes } => {
                write!(f, "label {value} is outside 0-{}", classes - 1)
            }
            Self::UnknownUsage { token } => write!(
                f,
                "unknown Usage {token:?}; expected Training, PublicTest or PrivateTest"
            ),
        }
    }
}
