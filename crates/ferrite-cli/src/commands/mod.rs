pub mod data;
pub mod dataset;
