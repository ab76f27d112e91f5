//! # ferrite-viz
//!
//! The pictures ferrite makes: contact sheets of faces per class and grids of augmented
//! faces (for `ferrite data inspect`), drawn with `image`/`imageproc` and labelled with the
//! embedded DejaVu Sans font (`ab_glyph` rasterises it), so no system font is needed.
//! Charts (training curves, confusion heatmaps) are drawn with `plotters`.
//! Every file is written atomically: to a temporary file beside the target, then renamed.

pub mod charts;
mod save;
pub mod sheet;
pub mod text;

pub use save::{VizError, encode_png, save_png};
