//! How forward passes use rayon's thread pool at small batches, where handing work between
//! threads costs as much as the work.
//!
//! - [`run_on_calling_thread`]: a binary that computes on its main thread makes that thread
//!   one of the pool's workers, so a forward pass starts on it directly instead of being
//!   handed to a pool thread (a wake-up) and waited for (a sleep and a second wake-up).
//! - [`Warm`]: while forward passes run, and for [`spin_window`] after the last one ends, one
//!   pool thread keeps looking for work instead of going to sleep. Rayon puts an idle worker
//!   to sleep after a few dozen yields, and waking it (a futex) costs tens of microseconds on
//!   a VM, once per parallel op. OpenMP, under PyTorch and Keras, spins the same way. A
//!   process whose other threads compute can turn it off ([`set_default_spin_window`]).
//!
//! `throughput infer MODEL 1` on 2 Zen 4 cores, alternating (medians, ms): both together took
//! DeXpression 0.89–0.91 → 0.77–0.78, mini-Xception 0.41–0.42 → 0.38, seed-cnn 0.33 → 0.31,
//! VGG 5.95–5.99 → 5.60–5.62; training did not move.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Makes the calling thread worker 0 of rayon's global pool (the pool starts one thread fewer).
/// Call it first thing in `main`, and only where `main` itself computes: a thread that
/// joins the pool but never runs parallel work (an async server's main thread) leaves the pool
/// a worker short.
pub fn run_on_calling_thread() -> Result<(), rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
}

/// The spin window when `FERRITE_SPIN_US` does not set one, in microseconds.
static DEFAULT_WINDOW: AtomicU64 = AtomicU64::new(200);

/// Makes `window` this process's spin window unless `FERRITE_SPIN_US` sets one; takes effect
/// only before the first forward pass. A server whose other threads compute (face detection)
/// turns spinning off: the spinning core is theirs.
pub fn set_default_spin_window(window: Duration) {
    DEFAULT_WINDOW.store(window.as_micros() as u64, Ordering::SeqCst);
}

/// How long a pool thread keeps spinning after the last forward pass ends:
/// `FERRITE_SPIN_US` microseconds (default 200; 0 turns spinning off).
pub fn spin_window() -> Duration {
    static WINDOW: OnceLock<Duration> = OnceLock::new();
    *WINDOW.get_or_init(|| {
        let micros = std::env::var("FERRITE_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| DEFAULT_WINDOW.load(Ordering::SeqCst));
        Duration::from_micros(micros)
    })
}

/// Forward passes now running.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// When the last one ended, in microseconds since [`clock_start`].
static LAST_END: AtomicU64 = AtomicU64::new(0);
/// Whether a spinner is on the pool.
static SPINNING: AtomicBool = AtomicBool::new(false);

fn clock_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn micros_now() -> u64 {
    clock_start().elapsed().as_micros() as u64
}

/// Held for the length of one forward pass; keeps a pool thread spinning meanwhile.
pub struct Warm(());

impl Warm {
    pub fn start() -> Self {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        let window = spin_window();
        if !window.is_zero()
            && rayon::current_num_threads() > 1
            && !SPINNING.swap(true, Ordering::SeqCst)
        {
            spawn_spinner(window.as_micros() as u64);
        }
        Warm(())
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        LAST_END.store(micros_now(), Ordering::SeqCst);
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a pool thread is spinning now, so that work handed to the pool starts without a
/// wake-up.
pub fn is_warm() -> bool {
    SPINNING.load(Ordering::Relaxed)
}

/// A pool task that runs other tasks as they come, until no forward pass has run for
/// `window_micros`.
fn spawn_spinner(window_micros: u64) {
    let caller = rayon::current_thread_index();
    rayon::spawn(move || {
        // On the thread that started the pass (it picked the task off its own queue while
        // waiting), spinning would wait for the pass it is part of: stop, the next pass
        // starts another.
        if rayon::current_thread_index() != caller {
            run_tasks_until_idle(window_micros);
        }
        SPINNING.store(false, Ordering::SeqCst);
    });
}

fn run_tasks_until_idle(window_micros: u64) {
    loop {
        let idle = micros_now().saturating_sub(LAST_END.load(Ordering::SeqCst)) > window_micros;
        if idle && RUNNING.load(Ordering::SeqCst) == 0 {
            return;
        }
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spinner_stops_within(limit: Duration) -> bool {
        let started = Instant::now();
        while SPINNING.load(Ordering::SeqCst) {
            if started.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    #[test]
    fn passes_complete_with_a_spinner_and_the_spinner_stops() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a 2-thread pool");
        // Passes started on a pool thread (as with `run_on_calling_thread`) and from outside it,
        // each with parallel work the spinner may pick up or its own thread may pop.
        for _ in 0..50 {
            let sum: u64 = pool.install(|| {
                let _warm = Warm::start();
                let (a, b) = rayon::join(|| (0..1000u64).sum::<u64>(), || 1u64);
                a + b
            });
            assert_eq!(sum, 499_501);
        }
        assert!(spinner_stops_within(Duration::from_secs(30)));
    }
}
