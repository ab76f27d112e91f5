//! `ferrite models`.

use burn::prelude::Device;
use clap::Args;
use ferrite_models::{Architecture, ModelConfig};

#[derive(Args)]
pub struct ModelsArgs {
    /// Input side (48, or 64 as the recipe resized).
    #[arg(long, default_value_t = 48)]
    input_side: usize,
    /// Number of classes.
    #[arg(long, default_value_t = 7)]
    classes: usize,
}

pub fn run(args: &ModelsArgs) -> anyhow::Result<()> {
    let device = Device::flex();
    println!(
        "{:<14} {:>12} {:>14}  description",
        "model", "parameters", "MACs/image"
    );
    for architecture in Architecture::ALL {
        let config = ModelConfig {
            input_side: args.input_side,
            ..ModelConfig::new(architecture, args.classes)
        };
        let network = config.init(&device)?;
        println!(
            "{:<14} {:>12} {:>14}  {}",
            architecture.name(),
            thousands(network.trainable_params() as u64),
            thousands(network.macs(args.input_side)),
            architecture.description()
        );
    }
    Ok(())
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
