//! What the timing examples share: the process set up as the `ferrite` binary runs (mimalloc
//! keeping freed memory, the main thread one of rayon's workers), and the median.

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
