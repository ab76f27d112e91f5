pub mod data;
pub mod dataset;
pub mod eval;
pub mod mine;
pub mod models;
pub mod predict;
pub mod sweep;
pub mod train;
