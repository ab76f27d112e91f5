//! The training loop.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use ferrite_data::{BatchConfig, ClassMap, EpochPlan, FaceBatch, FaceStore};
use ferrite_models::saved::write_atomic;
use ferrite_models::{ModelMeta, Network, SavedModel};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, TrainState};
use crate::metrics::{Confusion, Tta, argmax_rows, log_loss, predict_probabilities};
use crate::schedule::PlateauState;
use crate::{OptimizerKind, TrainConfig, TrainError, report};

/// How to run (as opposed to what to train, which is the [`TrainConfig`]).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Continue from `checkpoint.bin` in the run folder.
    pub resume: bool,
    /// Draw progress bars (otherwise only one line per epoch).
    pub progress: bool,
    /// The plain (non-autodiff) device; training uses its autodiff decorator.
    pub device: Device,
}

/// One line of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub learning_rate: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub run_dir: PathBuf,
    pub best_accuracy: f64,
    pub best_epoch: usize,
    pub history: Vec<EpochRecord>,
    pub seconds: f64,
    pub stopped_early: bool,
    /// Confusion of the best model on the validation rows.
    pub confusion: Confusion,
}

/// What the loop needs, resolved once from the config and the data.
struct Setup<'a> {
    store: Cow<'a, FaceStore>,
    train_rows: Vec<usize>,
    val_rows: Vec<usize>,
    batch: BatchConfig,
    meta: ModelMeta,
}

fn setup<'a>(config: &TrainConfig, data: &'a FaceStore) -> Result<Setup<'a>, TrainError> {
    config.validate()?;
    let map = ClassMap::new(data.classes(), &config.exclude, &config.merge)?;
    let store = if map.is_identity() {
        Cow::Borrowed(data)
    } else {
        Cow::Owned(data.remap(&map))
    };
    let split = config.split.resolve(&store)?;
    let limit = |rows: Vec<usize>, limit: Option<usize>, salt: u64| match limit {
        Some(n) if n < rows.len() => {
            let mut rows = rows;
            rows.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed ^ salt));
            rows.truncate(n);
            rows.sort_unstable();
            rows
        }
        _ => rows,
    };
    let mut train_rows = split.train;
    if let Some(file) = &config.train_rows_file {
        let wanted: std::collections::HashSet<u32> =
            crate::mining::read_rows(file)?.into_iter().collect();
        let listed: Vec<usize> = train_rows
            .iter()
            .copied()
            .filter(|&i| wanted.contains(&store.source_row(i)))
            .collect();
        if listed.is_empty() {
            return Err(TrainError::Config {
                origin: file.display().to_string(),
                message: "lists none of the training rows of this data".into(),
            });
        }
        train_rows = match config.hard_mix {
            Some(share) => crate::mining::oversample(train_rows, &listed, share),
            None => listed,
        };
    }
    let train_rows = limit(train_rows, config.limit_train, 1);
    let val_rows = limit(split.validation, config.limit_validation, 2);
    let batch = BatchConfig {
        batch_size: config.batch_size,
        input_side: config.input_side,
        normalization: config.normalization,
        augment: config.augment.clone(),
        sampling: config.sampling,
        seed: config.seed,
    };
    let meta = ModelMeta {
        config: config.model_config(store.classes().len()),
        classes: store.classes().clone(),
        normalization: config.normalization,
        card: serde_json::Map::new(),
    };
    Ok(Setup {
        store,
        train_rows,
        val_rows,
        batch,
        meta,
    })
}

/// The optimizer a config names, with Keras/PyTorch defaults.
pub fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.optimizer {
        // Keras's Adam epsilon (Burn defaults to 1e-5).
        OptimizerKind::Adam => AdamConfig::new()
            .with_epsilon(1e-7)
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_epsilon(1e-7)
            .with_weight_decay(config.weight_decay as f32)
            .init(),
        OptimizerKind::Sgd => {
            // Burn's momentum dampening defaults to 0.1; PyTorch and Keras use 0.
            let momentum = MomentumConfig::new()
                .with_momentum(config.momentum)
                .with_dampening(0.0)
                .with_nesterov(true);
            SgdConfig::new()
                .with_momentum(Some(momentum))
                .with_weight_decay(decay)
                .init()
        }
    }
}

/// Trains per `config` on `data`, writing the run folder `run_dir`.
pub fn train(
    config: &TrainConfig,
    data: &FaceStore,
    run_dir: &Path,
    options: &RunOptions,
) -> Result<TrainOutcome, TrainError> {
    let setup = setup(config, data)?;
    if let Some(precision) = config.precision {
        ferrite_models::ops::set_precision(precision);
    }
    let plain = options.device.clone();
    let autodiff = plain.clone().autodiff();
    plain.seed(config.seed);
    let (mut network, mut optim, mut state) =
        start_or_resume(config, &setup, run_dir, &autodiff, options.resume)?;
    write_atomic(&run_dir.join("config.toml"), config.to_toml().as_bytes())?;
    eprintln!(
        "training {} ({} parameters) on {} images, validating on {}, {} classes: {}",
        config.model,
        network.trainable_params(),
        setup.train_rows.len(),
        setup.val_rows.len(),
        setup.meta.classes.len(),
        setup.meta.classes.names().join(", ")
    );
    let first_epoch = if state.stopped_early {
        config.epochs
    } else {
        state.epochs_done
    };
    for epoch in first_epoch..config.epochs {
        let started = Instant::now();
        let (trained, train_loss, train_accuracy) = train_epoch(
            network, &mut optim, &setup, config, &state, epoch, &autodiff, options,
        );
        network = trained;
        let trained = EpochResult {
            network: &network,
            optim: &optim,
            train_loss,
            train_accuracy,
            started,
        };
        end_epoch(trained, &setup, config, &mut state, run_dir, &plain)?;
        if config
            .patience
            .is_some_and(|p| epoch + 1 - state.best_epoch > p)
        {
            eprintln!(
                "early stopping: no improvement for {} epochs",
                epoch + 1 - state.best_epoch
            );
            state.stopped_early = true;
            save_checkpoint(&network, &optim, &setup, &state, run_dir)?;
            break;
        }
    }

    let best = SavedModel::load(&run_dir.join("best.ferrite"), &plain)?;
    let confusion = validate(&best.network, &setup, &plain).confusion;
    let outcome = TrainOutcome {
        run_dir: run_dir.to_path_buf(),
        best_accuracy: state.best_accuracy,
        best_epoch: state.best_epoch,
        history: state.history,
        seconds: state.seconds,
        stopped_early: state.stopped_early,
        confusion,
    };
    report::write_run_report(&outcome, config, &best.meta)?;
    Ok(outcome)
}

/// A fresh start (new weights, or `init_from`'s), or the state of `checkpoint.bin` when resuming.
fn start_or_resume(
    config: &TrainConfig,
    setup: &Setup,
    run_dir: &Path,
    autodiff: &Device,
    resume: bool,
) -> Result<(Network, ModuleOptimizer, TrainState), TrainError> {
    let checkpoint_path = run_dir.join("checkpoint.bin");
    if resume && checkpoint_path.exists() {
        let restored = checkpoint::load(&checkpoint_path, autodiff)?;
        let problem = |message: String| TrainError::Checkpoint {
            path: checkpoint_path.clone(),
            message,
        };
        if restored.state.config != *config {
            return Err(problem(
                "was written with a different config; resume with the run's own config.toml".into(),
            ));
        }
        let optim = optimizer(config)
            .from_bytes(restored.optimizer)
            .map_err(|e| problem(format!("optimizer state: {e}")))?;
        eprintln!(
            "resuming {} after epoch {}",
            run_dir.display(),
            restored.state.epochs_done
        );
        return Ok((restored.model.network, optim, restored.state));
    }
    if checkpoint_path.exists() {
        return Err(TrainError::RunExists {
            path: run_dir.to_path_buf(),
        });
    }
    let state = TrainState {
        config: config.clone(),
        epochs_done: 0,
        history: Vec::new(),
        plateau: PlateauState::default(),
        best_accuracy: -1.0,
        best_epoch: 0,
        seconds: 0.0,
        stopped_early: false,
    };
    Ok((
        initial_network(config, setup, autodiff)?,
        optimizer(config),
        state,
    ))
}

/// New weights, or those of `config.init_from` when it names a model of the same shape.
fn initial_network(
    config: &TrainConfig,
    setup: &Setup,
    autodiff: &Device,
) -> Result<Network, TrainError> {
    let Some(path) = &config.init_from else {
        return Ok(setup.meta.config.init(autodiff)?);
    };
    let start = SavedModel::load(path, autodiff)?;
    let (a, b) = (&start.meta.config, &setup.meta.config);
    if (a.architecture, a.num_classes, a.input_side, a.width)
        != (b.architecture, b.num_classes, b.input_side, b.width)
        || start.meta.classes != setup.meta.classes
    {
        return Err(TrainError::Config {
            origin: path.display().to_string(),
            message: format!(
                "is a {}-class {} at {} px; this run trains a {}-class {} at {} px",
                a.num_classes,
                a.architecture,
                a.input_side,
                b.num_classes,
                b.architecture,
                b.input_side
            ),
        });
    }
    eprintln!("starting from the weights of {}", path.display());
    Ok(start.network)
}

/// What one epoch of training produced.
struct EpochResult<'a> {
    network: &'a Network,
    optim: &'a ModuleOptimizer,
    train_loss: f64,
    train_accuracy: f64,
    started: Instant,
}

/// The callbacks at the end of an epoch: validate, log, keep the best and last models,
/// rewrite the CSV log, checkpoint.
fn end_epoch(
    trained: EpochResult,
    setup: &Setup,
    config: &TrainConfig,
    state: &mut TrainState,
    run_dir: &Path,
    plain: &Device,
) -> Result<(), TrainError> {
    let epoch = state.epochs_done;
    let eval = trained.network.valid();
    let validation = validate(&eval, setup, plain);
    let seconds = trained.started.elapsed().as_secs_f64();
    let record = EpochRecord {
        epoch: epoch + 1,
        train_loss: trained.train_loss,
        train_accuracy: trained.train_accuracy,
        val_loss: validation.loss,
        val_accuracy: validation.confusion.accuracy(),
        learning_rate: config.schedule.rate(
            config.learning_rate,
            epoch as f64 + 1.0 - 1e-9,
            config.epochs,
            &state.plateau,
        ),
        seconds,
        images_per_second: setup.train_rows.len() as f64 / seconds,
    };
    eprintln!(
        "epoch {:>3}/{}  loss {:.4}  acc {:.4}  val_loss {:.4}  val_acc {:.4}  lr {:.2e}  {:.0} s  {:.0} img/s",
        record.epoch,
        config.epochs,
        record.train_loss,
        record.train_accuracy,
        record.val_loss,
        record.val_accuracy,
        record.learning_rate,
        record.seconds,
        record.images_per_second
    );
    config
        .schedule
        .observe(record.val_accuracy, &mut state.plateau);
    let improved = record.val_accuracy > state.best_accuracy;
    if improved {
        state.best_accuracy = record.val_accuracy;
        state.best_epoch = epoch + 1;
    }
    state.history.push(record);
    state.epochs_done = epoch + 1;
    state.seconds += seconds;
    let mut model = SavedModel {
        meta: setup.meta.clone(),
        network: eval,
    };
    model.meta.card = card(config, state, setup);
    if improved {
        model.save(&run_dir.join("best.ferrite"))?;
    }
    model.save(&run_dir.join("last.ferrite"))?;
    report::write_metrics_csv(&run_dir.join("metrics.csv"), &state.history)?;
    save_checkpoint(trained.network, trained.optim, setup, state, run_dir)
}

fn save_checkpoint(
    network: &Network,
    optim: &ModuleOptimizer,
    setup: &Setup,
    state: &TrainState,
    run_dir: &Path,
) -> Result<(), TrainError> {
    let path = run_dir.join("checkpoint.bin");
    let optimizer_bytes = optim.into_bytes().map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        message: format!("optimizer state: {e}"),
    })?;
    let training_copy = SavedModel {
        meta: setup.meta.clone(),
        network: network.clone(),
    };
    checkpoint::save(&path, state, &training_copy, &optimizer_bytes)
}

struct Validation {
    loss: f64,
    confusion: Confusion,
}

/// Predicts the validation rows with an inference network on the plain device.
fn validate(network: &Network, setup: &Setup, plain: &Device) -> Validation {
    let batch = setup.batch.for_evaluation();
    let probabilities = predict_probabilities(
        network,
        &setup.store,
        &setup.val_rows,
        &batch,
        Tta::None,
        plain,
    );
    let targets: Vec<u8> = setup
        .val_rows
        .iter()
        .map(|&i| setup.store.label(i))
        .collect();
    let k = setup.meta.classes.len();
    Validation {
        loss: log_loss(&probabilities, &targets, k),
        confusion: Confusion::from_predictions(&targets, &argmax_rows(&probabilities, k), k),
    }
}

/// Facts for the model card, saved inside every model file.
fn card(
    config: &TrainConfig,
    state: &TrainState,
    setup: &Setup,
) -> serde_json::Map<String, serde_json::Value> {
    let json = serde_json::json!({
        "validation_accuracy": state.best_accuracy,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epochs_done,
        "training_seconds": state.seconds,
        "train_images": setup.train_rows.len(),
        "validation_images": setup.val_rows.len(),
        "split": config.split,
        "recipe": config.to_toml(),
    });
    match json {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("json! of an object literal"),
    }
}

/// What one optimisation step measured on its batch.
pub struct StepResult {
    pub loss: f32,
    pub correct: i64,
}

/// One optimisation step: forward, loss (hard or FER+ soft labels), backward, update. The
/// whole step runs on rayon's pool, for the reason `Network::forward` does: its ops' parallel
/// loops then start from a pool thread rather than being handed over one by one.
pub fn train_step(
    network: Network,
    optim: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    batch: FaceBatch,
    soft_labels: bool,
    learning_rate: f64,
) -> (Network, StepResult) {
    rayon::scope(|_| {
        let logits = network.forward(batch.images);
        let predicted = logits.clone().detach().argmax(1).squeeze_dim::<1>(1);
        let correct: i64 = predicted
            .equal(batch.targets.clone())
            .int()
            .sum()
            .into_scalar();
        let loss = match (soft_labels, batch.soft_targets) {
            (true, Some(soft)) => burn::tensor::loss::cross_entropy_with_logits(logits, soft),
            _ => loss_fn.forward(logits, batch.targets),
        };
        let grads = GradientsParams::from_grads(loss.backward(), &network);
        let network = optim.step(learning_rate, network, grads);
        let loss: f32 = loss.into_scalar();
        (network, StepResult { loss, correct })
    })
}

/// One pass over the training rows: batches are built (augmented, normalised) on a
/// prefetch thread while the previous batch trains. Returns the network, mean loss and accuracy.
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    network: Network,
    optim: &mut ModuleOptimizer,
    setup: &Setup,
    config: &TrainConfig,
    state: &TrainState,
    epoch: usize,
    autodiff: &Device,
    options: &RunOptions,
) -> (Network, f64, f64) {
    let plan = EpochPlan::new(&setup.store, &setup.train_rows, &setup.batch, epoch);
    let batches = plan.len();
    let bar = progress_bar(
        options.progress,
        setup.train_rows.len() as u64,
        epoch,
        config.epochs,
    );
    let smoothing = (config.label_smoothing > 0.0).then_some(config.label_smoothing);
    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing(smoothing)
        .init(autodiff);
    let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0i64, 0usize);
    let network = std::thread::scope(|scope| {
        let mut network = network;
        let (sender, receiver) = mpsc::sync_channel(2);
        let store: &FaceStore = &setup.store;
        let batch_config = &setup.batch;
        let plan = &plan;
        scope.spawn(move || {
            let mut position = 0;
            for rows in &plan.batches {
                let host = batch_config.host_batch(store, rows, epoch, position);
                position += rows.len();
                if sender.send(host).is_err() {
                    return;
                }
            }
        });
        for (index, host) in receiver.into_iter().enumerate() {
            let progress = epoch as f64 + index as f64 / batches as f64;
            let lr = config.schedule.rate(
                config.learning_rate,
                progress,
                config.epochs,
                &state.plateau,
            );
            let n = host.len();
            let step;
            (network, step) = train_step(
                network,
                optim,
                &loss_fn,
                host.to_device(autodiff),
                config.soft_labels,
                lr,
            );
            let (batch_loss, batch_correct) = (step.loss, step.correct);
            loss_sum += batch_loss as f64 * n as f64;
            correct += batch_correct;
            seen += n;
            bar.inc(n as u64);
            bar.set_message(format!(
                "loss {:.4} acc {:.4} lr {lr:.2e}",
                loss_sum / seen as f64,
                correct as f64 / seen as f64
            ));
        }
        network
    });
    bar.finish_and_clear();
    (
        network,
        loss_sum / seen.max(1) as f64,
        correct as f64 / seen.max(1) as f64,
    )
}

fn progress_bar(visible: bool, images: u64, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(images),
        if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} img  {rate} img/s  ETA {eta}  {msg}",
    )
    .expect("valid progress template")
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}", state.per_sec());
        },
    )
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
    bar
}
