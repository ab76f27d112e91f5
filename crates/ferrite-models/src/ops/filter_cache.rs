//! Filters rearranged for a kernel at inference, computed once per weight tensor and kept
//! while the weights live.
//!
//! Why: at batch 1 rearranging (or transforming) a layer's filters can cost as much as the
//! convolution itself, and a model's weights stay the same from call to call.
//!
//! Sound because burn-flex storage is an `Arc` that is copied before any write while it is
//! shared: an entry holds a clone of its weights, so the values it was built from cannot
//! change, and their address cannot be reused, while it exists. Entries whose weights nobody
//! else holds any more (the model was dropped) are removed on the next call.

use std::sync::{Arc, Mutex, MutexGuard};

use burn::backend::flex::FlexTensor;

/// What a cache holds: its size counts against the cache's limit.
pub(crate) trait Cached {
    /// Values held.
    fn len(&self) -> usize;
}

impl Cached for Vec<f32> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

/// Rearranged filters by weight tensor, at most `max_values` values in all (the oldest go
/// first beyond it).
pub(crate) struct FilterCache<T> {
    entries: Mutex<Vec<Entry<T>>>,
    max_values: usize,
}

struct Entry<T> {
    /// Keeps the values the filters came from alive and unchanged (see the module's notes).
    weights: FlexTensor,
    key: Key,
    filters: Arc<T>,
}

/// Where the weights' values are, how many, the `[out, in]` shape and the kernel's variant
/// (a tile side, say) they were rearranged for.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
struct Key {
    address: usize,
    len: usize,
    shape: [usize; 2],
    variant: usize,
}

impl<T: Cached> FilterCache<T> {
    pub(crate) const fn new(max_values: usize) -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            max_values,
        }
    }

    /// The filters `make` builds from `w`'s values (contiguous `f32`) for `shape` and
    /// `variant`, from the cache when it has them.
    pub(crate) fn get(
        &self,
        w: &FlexTensor,
        shape: [usize; 2],
        variant: usize,
        make: impl FnOnce(&[f32]) -> T,
    ) -> Arc<T> {
        let values = w.as_slice::<f32>().expect("contiguous f32 weights");
        let key = Key {
            address: values.as_ptr() as usize,
            len: values.len(),
            shape,
            variant,
        };
        let mut entries = self.live_entries();
        if let Some(entry) = entries.iter().find(|e| e.key == key) {
            return Arc::clone(&entry.filters);
        }
        let filters = Arc::new(make(values));
        entries.push(Entry {
            weights: w.clone(),
            key,
            filters: Arc::clone(&filters),
        });
        while entries.iter().map(|e| e.filters.len()).sum::<usize>() > self.max_values {
            entries.remove(0);
        }
        filters
    }

    /// The entries, locked, without those whose weights nobody else holds any more.
    fn live_entries(&self) -> MutexGuard<'_, Vec<Entry<T>>> {
        // A poisoned lock only means another thread panicked mid-update: entries stay valid.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| !e.weights.is_unique());
        entries
    }

    /// The `[out, in]` shapes of the live entries (for tests).
    #[cfg(test)]
    pub(crate) fn shapes(&self) -> Vec<[usize; 2]> {
        self.live_entries().iter().map(|e| e.key.shape).collect()
    }
}
