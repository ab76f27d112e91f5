//! The allocator training runs with: mimalloc, told to keep the memory it frees.
//!
//! A training step allocates and frees the same large activation and gradient buffers every
//! step. glibc's malloc hands them back to the kernel, mimalloc by default after 10 ms; either
//! way the next step faults them in again and the kernel zeroes every page (with transparent
//! huge pages, 2 MiB at a time). perf put that at 10–20 % of a step; keeping the memory made
//! mini-Xception train 11–15 % faster (`throughput train mini-xception 64 16 2`, A/B). Binaries opt in:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: ferrite_train::allocator::Allocator = ferrite_train::allocator::Allocator;
//! fn main() { ferrite_train::allocator::keep_freed_memory(); }
//! ```

pub use mimalloc::MiMalloc as Allocator;

/// mimalloc's `mi_option_purge_delay` (the 16th entry of `mi_option_e` in mimalloc 3's
/// `mimalloc.h`; libmimalloc-sys names only some options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never return freed memory to the OS (purge delay −1). Peak memory is unchanged; the
/// process keeps what it peaked at.
pub fn keep_freed_memory() {
    // SAFETY: sets one of mimalloc's integer options; valid at any time, from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}
