//! Learning-rate schedules. Each is a pure function of training progress (plus, for
//! reduce-on-plateau, a small state saved in checkpoints), so a resumed run continues on
//! exactly the curve it left.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Schedule {
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step { step_size: usize, gamma: f64 },
    /// Linear warm-up over `warmup_epochs`, then cosine decay to `min_lr` at the last epoch.
    Cosine { warmup_epochs: usize, min_lr: f64 },
    /// Keras `ReduceLROnPlateau(factor, patience, min_lr)` on validation accuracy
    /// (Burn has none; written here).
    ReduceOnPlateau {
        factor: f64,
        patience: usize,
        min_lr: f64,
    },
}

/// Reduce-on-plateau's memory: the current factor, the best metric and epochs since it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlateauState {
    pub scale: f64,
    pub best: f64,
    pub epochs_without_improvement: usize,
}

impl Default for PlateauState {
    fn default() -> Self {
        Self {
            scale: 1.0,
            best: f64::MIN, // finite, so it survives JSON in checkpoints
            epochs_without_improvement: 0,
        }
    }
}

impl Schedule {
    /// The learning rate at `progress` epochs (fractional: 2.5 is halfway through the third).
    pub fn rate(
        &self,
        base: f64,
        progress: f64,
        total_epochs: usize,
        plateau: &PlateauState,
    ) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { step_size, gamma } => {
                base * gamma.powi((progress as usize / step_size.max(1)) as i32)
            }
            Schedule::Cosine {
                warmup_epochs,
                min_lr,
            } => {
                let warmup = warmup_epochs as f64;
                if progress < warmup {
                    return base * (progress + 1.0 / 64.0).min(warmup) / warmup;
                }
                let span = (total_epochs as f64 - warmup).max(1e-9);
                let t = ((progress - warmup) / span).clamp(0.0, 1.0);
                min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::ReduceOnPlateau { min_lr, .. } => (base * plateau.scale).max(min_lr),
        }
    }

    /// Called once per epoch with the validation metric (higher is better).
    pub fn observe(&self, metric: f64, plateau: &mut PlateauState) {
        let Schedule::ReduceOnPlateau {
            factor, patience, ..
        } = *self
        else {
            return;
        };
        if metric > plateau.best {
            plateau.best = metric;
            plateau.epochs_without_improvement = 0;
        } else {
            plateau.epochs_without_improvement += 1;
            if plateau.epochs_without_improvement > patience {
                plateau.scale *= factor;
                plateau.epochs_without_improvement = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_and_cosine_follow_their_curves() {
        let p = PlateauState::default();
        let step = Schedule::Step {
            step_size: 10,
            gamma: 0.1,
        };
        assert_eq!(step.rate(1.0, 9.9, 30, &p), 1.0);
        assert!((step.rate(1.0, 20.0, 30, &p) - 0.01).abs() < 1e-12);
        let cosine = Schedule::Cosine {
            warmup_epochs: 2,
            min_lr: 0.0,
        };
        assert!(cosine.rate(1.0, 0.0, 12, &p) < 0.05);
        assert!((cosine.rate(1.0, 2.0, 12, &p) - 1.0).abs() < 1e-12);
        assert!((cosine.rate(1.0, 7.0, 12, &p) - 0.5).abs() < 1e-12);
        assert!(cosine.rate(1.0, 12.0, 12, &p) < 1e-12);
    }

    #[test]
    fn plateau_reduces_after_patience_and_respects_min_lr() {
        let schedule = Schedule::ReduceOnPlateau {
            factor: 0.1,
            patience: 2,
            min_lr: 1e-4,
        };
        let mut state = PlateauState::default();
        for metric in [0.5, 0.6, 0.6, 0.59, 0.6] {
            schedule.observe(metric, &mut state);
        }
        assert_eq!(state.scale, 0.1);
        assert!((schedule.rate(1e-2, 5.0, 10, &state) - 1e-3).abs() < 1e-15);
        for _ in 0..20 {
            schedule.observe(0.1, &mut state);
        }
        assert_eq!(schedule.rate(1e-2, 30.0, 40, &state), 1e-4);
    }
}
