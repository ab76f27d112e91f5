//! A bounded pool of inference workers, off the async threads.
//!
//! Each worker is an OS thread that owns its own face detector (rustface's detector is not
//! shareable) and shares one [`Analyzer`]. A job decodes the picture, finds and classifies its
//! faces. Admission is a semaphore of `workers + queue` permits: when it is empty the caller
//! is told at once ([`PoolError::Busy`]), so load never piles up without bound.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ferrite_vision::{
    Analyzer, DetectorConfig, Face, FaceDetector, Margins, PictureError, SeetaDetector, StageTimes,
    decode_picture,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Per-request options (the query string of `/v1/analyze`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeOptions {
    /// Margin left and right of a face, in pixels per 100 pixels of face width.
    pub margin_x: Option<u32>,
    /// Margin above and below a face, in pixels per 100 pixels of face width.
    pub margin_y: Option<u32>,
    /// Smallest face to find, in pixels (at least 20).
    pub min_face_size: Option<u32>,
    /// Keep only the k most probable emotions of each face, most probable first.
    pub top_k: Option<usize>,
}

impl AnalyzeOptions {
    /// Refuses options no picture could satisfy, before any work is done.
    pub fn check(&self) -> Result<(), PoolError> {
        if self.top_k == Some(0) {
            return Err(PoolError::BadOption("top_k must be at least 1".into()));
        }
        if let Some(size) = self.min_face_size.filter(|&s| s < 20) {
            return Err(PoolError::BadOption(format!(
                "min_face_size {size} is below SeetaFace's minimum of 20"
            )));
        }
        Ok(())
    }
}

/// What one picture gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<Face>,
    pub timings: Timings,
}

/// Milliseconds per stage, measured on the worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub decode_ms: f64,
    pub detect_ms: f64,
    pub classify_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolError {
    #[error("the server is busy: all {0} analysis slots are taken; retry shortly")]
    Busy(usize),
    #[error("analysis did not finish within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    BadPicture(#[from] PictureError),
    #[error("{0}")]
    BadOption(String),
    #[error("the inference workers have stopped")]
    Stopped,
}

struct Job {
    picture: Vec<u8>,
    options: AnalyzeOptions,
    reply: oneshot::Sender<Result<Analysis, PoolError>>,
}

/// Submits pictures to the workers. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    jobs: mpsc::SyncSender<Job>,
    slots: Arc<Semaphore>,
    capacity: usize,
    timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub workers: usize,
    /// Jobs that may wait for a worker beyond those being worked on.
    pub queue: usize,
    pub timeout: Duration,
    pub max_pixels: u64,
    pub detector: DetectorConfig,
    pub margins: Margins,
}

impl Pool {
    pub fn start(analyzer: Arc<Analyzer>, config: &PoolConfig) -> Result<Self, PoolError> {
        let capacity = config.workers.max(1) + config.queue;
        let (jobs, receiver) = mpsc::sync_channel::<Job>(capacity);
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        config
            .detector
            .validate()
            .map_err(|e| PoolError::BadOption(e.to_string()))?;
        for k in 0..config.workers.max(1) {
            let (analyzer, receiver, config) = (analyzer.clone(), receiver.clone(), config.clone());
            // rustface's detector cannot move between threads: each worker makes its own.
            let work = move || {
                let Ok(detector) = SeetaDetector::new(config.detector.clone()) else {
                    return; // validated above
                };
                let worker = Worker {
                    analyzer,
                    detector,
                    config,
                };
                worker.run(&receiver);
            };
            std::thread::Builder::new()
                .name(format!("ferrite-worker-{k}"))
                .spawn(work)
                .map_err(|_| PoolError::Stopped)?;
        }
        Ok(Self {
            jobs,
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            timeout: config.timeout,
        })
    }

    /// A slot for one job, or `Busy` at once when all are taken.
    pub fn reserve(&self) -> Result<OwnedSemaphorePermit, PoolError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| PoolError::Busy(self.capacity))
    }

    /// Analyses a picture in a reserved slot, within the pool's timeout.
    pub async fn analyze(
        &self,
        slot: OwnedSemaphorePermit,
        picture: Vec<u8>,
        options: AnalyzeOptions,
    ) -> Result<Analysis, PoolError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            picture,
            options,
            reply,
        };
        // Never blocks: the channel holds as many jobs as there are slots. It can still be
        // full when timed-out requests gave their slots back while their jobs wait.
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => PoolError::Busy(self.capacity),
            mpsc::TrySendError::Disconnected(_) => PoolError::Stopped,
        })?;
        let result = tokio::time::timeout(self.timeout, answer).await;
        // The slot frees when the job is answered or abandoned, not before.
        drop(slot);
        match result {
            Err(_) => Err(PoolError::Timeout(self.timeout)),
            Ok(Err(_)) => Err(PoolError::Stopped),
            Ok(Ok(analysis)) => analysis,
        }
    }
}

struct Worker {
    analyzer: Arc<Analyzer>,
    detector: SeetaDetector,
    config: PoolConfig,
}

impl Worker {
    fn run(mut self, jobs: &std::sync::Mutex<mpsc::Receiver<Job>>) {
        loop {
            let job = match jobs.lock() {
                Ok(receiver) => receiver.recv(),
                Err(_) => return,
            };
            let Ok(job) = job else { return };
            let result = self.analyze(&job.picture, job.options);
            // The requester may have timed out and gone; nothing to do then.
            let _ = job.reply.send(result);
        }
    }

    fn analyze(&mut self, bytes: &[u8], options: AnalyzeOptions) -> Result<Analysis, PoolError> {
        let started = Instant::now();
        let min_face = options
            .min_face_size
            .unwrap_or(self.config.detector.min_face_size);
        self.detector
            .set_min_face_size(min_face)
            .map_err(|e| PoolError::BadOption(e.to_string()))?;
        let picture = decode_picture(bytes, self.config.max_pixels)?;
        let decode_ms = started.elapsed().as_secs_f64() * 1e3;
        let margins = Margins {
            horizontal: options.margin_x.unwrap_or(self.config.margins.horizontal),
            vertical: options.margin_y.unwrap_or(self.config.margins.vertical),
        };
        let detector: &mut dyn FaceDetector = &mut self.detector;
        let (
            mut faces,
            StageTimes {
                detect_ms,
                classify_ms,
            },
        ) = self
            .analyzer
            .analyze_timed(detector, &picture.to_luma8(), margins);
        if let Some(k) = options.top_k {
            for face in &mut faces {
                face.probabilities.sort_by(|a, b| b.1.total_cmp(&a.1));
                face.probabilities.truncate(k);
            }
        }
        Ok(Analysis {
            width: picture.width(),
            height: picture.height(),
            faces,
            timings: Timings {
                decode_ms,
                detect_ms,
                classify_ms,
                total_ms: started.elapsed().as_secs_f64() * 1e3,
            },
        })
    }
}
