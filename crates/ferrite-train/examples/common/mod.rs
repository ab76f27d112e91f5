//! What the timing examples share: the process set up as the `ferrite` binary runs (mimalloc
//! keeping freed memory, the main thread one of rayon's workers), the median, argument
//! parsing, and evicting the caches.

// Each example compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

/// Call first thing in `main`.
pub fn set_up_like_ferrite() {
    ferrite_train::allocator::keep_freed_memory();
    // As in the `ferrite` binary: the main thread is one of the pool's workers.
    ferrite_models::pool::run_on_calling_thread().expect("the global pool is not built yet");
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// 64 MB to read before a timed call, as the rest of a model's forward evicts a layer's
/// filters and buffers at batch 1.
pub struct Eviction(Vec<f32>);

impl Eviction {
    pub fn new() -> Self {
        Self(vec![1.0; 16 << 20])
    }

    /// Reads all of it on every thread of the pool.
    pub fn run(&self) {
        use rayon::prelude::*;
        let sum: f32 = self
            .0
            .par_chunks(1 << 16)
            .map(|c| c.iter().sum::<f32>())
            .sum();
        std::hint::black_box(sum);
    }
}

/// Command-line argument `n` parsed, or `default` when absent or unparsable.
pub fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}
