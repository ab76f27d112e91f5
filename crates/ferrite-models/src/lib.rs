//! # ferrite-models
//!
//! The FER2013 model zoo as Burn modules, each written to read like its paper's figure:
//!
//! | name | model |
//! |---|---|
//! | `seed-cnn` | the recipe's plain 7-conv CNN ([`seed::SeedCnn`]) |
//! | `seed-wide` | the recipe's wider, deeper CNN with separable convs ([`seed::SeedWide`]) |
//! | `dexpression` | DeXpression with two FeatEx blocks ([`dexpression::DeXpression`]) |
//! | `mini-xception` | Arriaga et al.'s mini-Xception ([`mini_xception::MiniXception`]) |
//! | `vgg` | a VGG-style net after Khaireddin & Chen 2021 ([`vgg::Vgg`]) |
//!
//! A [`ModelConfig`] builds a [`Network`]; [`saved`] writes a network with everything needed
//! to use it again (architecture, input size, normalisation, class names) into one file.
//!
//! The models' convolutions, batch norms and max pools go through [`ops`]: ferrite's own
//! kernels, registered with Burn's autodiff, where the tensors live on burn-flex (the CPU
//! backend), and Burn's ops on any other backend.

pub mod blocks;
pub mod dexpression;
pub mod mini_xception;
pub mod ops;
pub mod pool;
pub mod saved;
pub mod seed;
pub mod vgg;

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use saved::{ModelError, ModelMeta, SavedModel};

/// The architectures ferrite can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    SeedCnn,
    SeedWide,
    Dexpression,
    MiniXception,
    Vgg,
}

impl Architecture {
    pub const ALL: [Architecture; 5] = [
        Architecture::SeedCnn,
        Architecture::SeedWide,
        Architecture::Dexpression,
        Architecture::MiniXception,
        Architecture::Vgg,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Architecture::SeedCnn => "seed-cnn",
            Architecture::SeedWide => "seed-wide",
            Architecture::Dexpression => "dexpression",
            Architecture::MiniXception => "mini-xception",
            Architecture::Vgg => "vgg",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Architecture::SeedCnn => {
                "the recipe's plain CNN: 7 convs, BN, 2 dropouts, class maps + GAP"
            }
            Architecture::SeedWide => {
                "the recipe's wider CNN: conv + separable conv pairs 16..256, dense 128"
            }
            Architecture::Dexpression => "DeXpression (arXiv 1509.05371): stem + two FeatEx blocks",
            Architecture::MiniXception => {
                "mini-Xception (Arriaga et al. 2017): residual separable convs, GAP"
            }
            Architecture::Vgg => {
                "VGG-style, 4 stages of conv-BN-ReLU pairs 64..512 (Khaireddin & Chen 2021)"
            }
        }
    }

    /// Dropout rate of the recipe for this model.
    pub fn default_dropout(self) -> f64 {
        match self {
            Architecture::SeedCnn | Architecture::SeedWide => 0.25,
            Architecture::Dexpression | Architecture::MiniXception => 0.2,
            Architecture::Vgg => 0.5,
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Architecture {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Architecture::ALL
            .into_iter()
            .find(|a| a.name() == wanted)
            .ok_or_else(|| ModelError::UnknownArchitecture {
                name: s.to_string(),
                known: Architecture::ALL.map(Architecture::name).join(", "),
            })
    }
}

/// Everything needed to build a network (weights aside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub num_classes: usize,
    /// Side of the square grey input: 48 (FER2013's size) or 64 (the recipe's resize).
    pub input_side: usize,
    pub dropout: f64,
    /// Channel multiplier (used by `vgg`).
    pub width: f64,
}

impl ModelConfig {
    pub fn new(architecture: Architecture, num_classes: usize) -> Self {
        Self {
            architecture,
            num_classes,
            input_side: 48,
            dropout: architecture.default_dropout(),
            width: 1.0,
        }
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        let problem = if self.num_classes < 2 {
            Some("a classifier needs at least 2 classes".to_string())
        } else if !(32..=256).contains(&self.input_side) || !self.input_side.is_multiple_of(16) {
            Some(format!(
                "input side {} must be a multiple of 16 in 32..=256 (48 or 64)",
                self.input_side
            ))
        } else if !(0.0..1.0).contains(&self.dropout) {
            Some(format!("dropout {} must be in [0, 1)", self.dropout))
        } else if !(0.05..=8.0).contains(&self.width) {
            Some(format!("width {} must be in 0.05..=8", self.width))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(ModelError::InvalidConfig { problem }),
            None => Ok(()),
        }
    }

    pub fn init(&self, device: &Device) -> Result<Network, ModelError> {
        self.validate()?;
        let (k, side, dropout) = (self.num_classes, self.input_side, self.dropout);
        Ok(match self.architecture {
            Architecture::SeedCnn => Network::SeedCnn(seed::SeedCnn::new(k, dropout, device)),
            Architecture::SeedWide => {
                Network::SeedWide(seed::SeedWide::new(k, side, dropout, device))
            }
            Architecture::Dexpression => {
                Network::Dexpression(dexpression::DeXpression::new(k, side, dropout, device))
            }
            Architecture::MiniXception => {
                Network::MiniXception(mini_xception::MiniXception::new(k, device))
            }
            Architecture::Vgg => Network::Vgg(vgg::Vgg::new(k, side, self.width, dropout, device)),
        })
    }
}

/// Any model of the zoo: images `[batch, 1, side, side]` in, logits `[batch, classes]` out.
// Networks are built once and moved by value through training steps; boxing the variants
// would not shrink anything that matters (the weights live behind Burn's tensor handles).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    SeedCnn(seed::SeedCnn),
    SeedWide(seed::SeedWide),
    Dexpression(dexpression::DeXpression),
    MiniXception(mini_xception::MiniXception),
    Vgg(vgg::Vgg),
}

impl Network {
    /// The logits for a batch of images, computed on rayon's thread pool: every op's parallel
    /// loops are then started from a pool thread, instead of each being handed over from the
    /// caller's thread and waited for (a sleep and a wake-up per op). Batch 1 (`throughput
    /// infer MODEL 1`): DeXpression 0.59–0.78 → 0.47–0.48 ms, mini-Xception 0.40 → 0.31 ms.
    /// A pool thread spins meanwhile, for the reason [`pool`] gives.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let _warm = pool::Warm::start();
        rayon::scope(|_| self.forward_here(images))
    }

    fn forward_here(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Network::SeedCnn(m) => m.forward(images),
            Network::SeedWide(m) => m.forward(images),
            Network::Dexpression(m) => m.forward(images),
            Network::MiniXception(m) => m.forward(images),
            Network::Vgg(m) => m.forward(images),
        }
    }

    /// Multiply-adds for one image of side `side` (convolutions and dense layers).
    pub fn macs(&self, side: usize) -> u64 {
        match self {
            Network::SeedCnn(m) => m.macs(side),
            Network::SeedWide(m) => m.macs(side),
            Network::Dexpression(m) => m.macs(side),
            Network::MiniXception(m) => m.macs(side),
            Network::Vgg(m) => m.macs(side),
        }
    }

    /// Trainable parameters (Burn's `num_params` also counts batch-norm running statistics).
    pub fn trainable_params(&self) -> usize {
        struct Trainable {
            path: Vec<String>,
            count: usize,
        }
        impl burn::module::ModuleVisitor for Trainable {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                if !self.path.last().is_some_and(|s| s.starts_with("running_")) {
                    self.count += param.lazy_shape().num_elements();
                }
            }
        }
        let mut visitor = Trainable {
            path: Vec::new(),
            count: 0,
        };
        self.visit(&mut visitor);
        visitor.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_maps_48_and_64_pixel_faces_to_class_logits() {
        let device = Device::flex();
        for architecture in Architecture::ALL {
            for side in [48, 64] {
                let config = ModelConfig {
                    input_side: side,
                    width: 0.25,
                    ..ModelConfig::new(architecture, 7)
                };
                let network = config.init(&device).unwrap().valid();
                let logits = network.forward(Tensor::zeros([2, 1, side, side], &device));
                assert_eq!(logits.dims(), [2, 7], "{architecture} at {side}");
                assert!(network.macs(side) > 0);
            }
        }
    }

    #[test]
    fn parameter_counts_match_the_papers_scale() {
        let device = Device::flex();
        let params = |a| {
            ModelConfig::new(a, 7)
                .init(&device)
                .unwrap()
                .trainable_params()
        };
        // mini-Xception: "approximately 60,000 parameters".
        let mini = params(Architecture::MiniXception);
        assert!((50_000..70_000).contains(&mini), "{mini}");
        assert!(params(Architecture::SeedCnn) < params(Architecture::SeedWide));
        assert!(params(Architecture::Vgg) > 5_000_000);
    }

    #[test]
    fn names_round_trip_and_bad_configs_are_errors() {
        for a in Architecture::ALL {
            assert_eq!(a.name().parse::<Architecture>().unwrap(), a);
        }
        assert!(
            "resnet"
                .parse::<Architecture>()
                .unwrap_err()
                .to_string()
                .contains("seed-cnn")
        );
        let bad = ModelConfig {
            input_side: 50,
            ..ModelConfig::new(Architecture::Vgg, 7)
        };
        assert!(bad.init(&Device::flex()).is_err());
    }
}
