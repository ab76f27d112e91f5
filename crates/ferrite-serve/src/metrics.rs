//! `/metrics` in Prometheus's text format, through the `prometheus` crate.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub faces: IntCounter,
    pub errors: IntCounterVec,
    pub frames_dropped: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "ferrite_requests_total",
                "HTTP requests and live frames answered",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "ferrite_request_duration_seconds",
                "Time from request to answer",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let faces = IntCounter::new("ferrite_faces_total", "Faces found and classified")
            .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "ferrite_errors_total",
                "Requests answered with an error, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let frames_dropped = IntCounter::new(
            "ferrite_live_frames_dropped_total",
            "Live frames skipped because a newer one arrived while the server was busy",
        )
        .expect("valid metric");
        let registry = Registry::new();
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(faces.clone()),
            Box::new(errors.clone()),
            Box::new(frames_dropped.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            latency,
            faces,
            errors,
            frames_dropped,
        }
    }

    /// One answered request (or live frame) on `route`.
    pub fn record(&self, route: &str, status: u16, seconds: f64, faces: usize) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
        self.faces.inc_by(faces as u64);
    }

    pub fn render(&self) -> String {
        let mut text = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut text);
        String::from_utf8_lossy(&text).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
