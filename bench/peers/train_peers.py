"""Training (and inference) throughput of ferrite's architectures in PyTorch and Keras/TensorFlow.

The four networks are rebuilt layer for layer from crates/ferrite-models (seed.rs, dexpression.rs,
mini_xception.rs, vgg.rs, blocks.rs) at ferrite's defaults (7 classes, 48x48 grey input, the
recipe's dropout rates); their trainable parameter counts are checked against `ferrite models`.

usage:
  train_peers.py --framework torch|keras --model seed-cnn|dexpression|mini-xception|vgg
                 [--batch 64] [--steps 50] [--warmup 5] [--threads 2] [--channels-last]
                 [--infer] [--bf16] [--jit off|on|auto] [--params-only]

Training: random input (N, 1, 48, 48) f32 (Keras: (N, 48, 48, 1), TF's CPU layout) and random
labels, one fixed batch reused each step; Adam lr 1e-3 (epsilon 1e-7, as ferrite's trainer),
cross-entropy on logits; each timed step is forward + backward + optimizer step, in train mode
(dropout on, batch norm on batch statistics). Keras runs model.train_on_batch, which is the
compiled tf.function train step (XLA off: Keras's own default on CPU; --jit on turns it on).
Inference (--infer): forward only in eval mode (torch.inference_mode; Keras model(x,
training=False) inside a tf.function), timing every call; prints the median latency too.
--bf16 (torch, with --infer): the forward under torch.autocast("cpu", torch.bfloat16), PyTorch's
own bf16 inference on the CPU, the peer of ferrite's --precision bf16.

Prints one JSON line: {"framework", "model", "params", "batch", "images_per_second",
"peak_rss_mb", ...}; --params-only prints the parameter count of each model and checks it.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

NUM_CLASSES = 7
SIDE = 48
MODELS = ["seed-cnn", "dexpression", "mini-xception", "vgg"]
# `target/release/ferrite models` (7 classes, 48x48): trainable parameters.
FERRITE_PARAMS = {
    "seed-cnn": 76_062,
    "dexpression": 433_943,
    "mini-xception": 56_951,
    "vgg": 7_049_543,
}
# ModelConfig defaults (Architecture::default_dropout); mini-xception has no dropout layer.
DROPOUT = {"seed-cnn": 0.25, "dexpression": 0.2, "mini-xception": 0.0, "vgg": 0.5}
FEATEX_OUT = 208 + 64


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=["torch", "keras"], required=True)
    p.add_argument("--model", choices=MODELS + ["all"], default="all")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=50, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--channels-last", action="store_true",
                   help="torch: NHWC memory format for model and input (Keras is always NHWC)")
    p.add_argument("--infer", action="store_true", help="forward-only throughput in eval mode")
    p.add_argument("--bf16", action="store_true",
                   help="torch --infer: forward under CPU autocast to bfloat16")
    p.add_argument("--jit", choices=["off", "on", "auto"], default="off",
                   help="keras: XLA (jit_compile); off is Keras's own choice on CPU")
    p.add_argument("--params-only", action="store_true",
                   help="build the model(s), print and check the parameter counts, no timing")
    a = p.parse_args()
    if a.model == "all" and not a.params_only:
        p.error("--model all only with --params-only")
    if a.bf16 and not (a.infer and a.framework == "torch"):
        p.error("--bf16 only with --framework torch --infer")
    return a


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --------------------------------------------------------------------------------------------
# PyTorch (NCHW, exactly ferrite's explicit paddings)
# --------------------------------------------------------------------------------------------

def torch_models():
    import torch
    from torch import nn

    class ConvBn(nn.Module):
        """blocks.rs ConvBn: conv (no bias) -> batch norm -> ReLU (optional)."""

        def __init__(self, cin, cout, kernel=3, stride=1, padding=1, relu=True):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
            self.norm = nn.BatchNorm2d(cout)  # eps 1e-5, momentum 0.1: Burn's defaults
            self.relu = relu

        def forward(self, x):
            x = self.norm(self.conv(x))
            return torch.relu(x) if self.relu else x

    class SeparableConvBn(nn.Module):
        """blocks.rs SeparableConvBn: depthwise 3x3 -> pointwise 1x1 (no biases) -> BN -> ReLU."""

        def __init__(self, cin, cout, relu=True):
            super().__init__()
            self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
            self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
            self.norm = nn.BatchNorm2d(cout)
            self.relu = relu

        def forward(self, x):
            x = self.norm(self.pointwise(self.depthwise(x)))
            return torch.relu(x) if self.relu else x

    class SeedCnn(nn.Module):
        def __init__(self, k, dropout):
            super().__init__()
            self.convs = nn.ModuleList([
                ConvBn(1, 16, stride=1), ConvBn(16, 16, stride=2),
                ConvBn(16, 32, stride=1), ConvBn(32, 32, stride=2),
                ConvBn(32, 64, stride=1), ConvBn(64, 64, stride=2),
            ])
            self.dropout1 = nn.Dropout(dropout)
            self.dropout2 = nn.Dropout(dropout)
            self.head = ConvBn(64, k, relu=False)

        def forward(self, x):
            for i, conv in enumerate(self.convs):
                x = conv(x)
                if i == 1:
                    x = self.dropout1(x)
                if i == 3:
                    x = self.dropout2(x)
            return self.head(x).mean(dim=(2, 3))  # adaptive avg pool 1x1 + flatten

    def pool3x3(stride):
        return nn.MaxPool2d(3, stride=stride, padding=1)

    class FeatEx(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.reduce = nn.Conv2d(cin, 96, 1)
            self.conv3x3 = nn.Conv2d(96, 208, 3, padding=1)
            self.branch_pool = pool3x3(1)
            self.project = nn.Conv2d(cin, 64, 1)
            self.norm = nn.BatchNorm2d(FEATEX_OUT)
            self.pool = pool3x3(2)

        def forward(self, x):
            a = torch.relu(self.conv3x3(torch.relu(self.reduce(x))))
            b = torch.relu(self.project(self.branch_pool(x)))
            return self.pool(self.norm(torch.cat([a, b], dim=1)))

    class DeXpression(nn.Module):
        def __init__(self, k, dropout):
            super().__init__()
            self.stem_conv = nn.Conv2d(1, 64, 5, stride=2, padding=2)
            self.stem_pool = pool3x3(2)
            self.stem_norm = nn.BatchNorm2d(64)
            self.featex1 = FeatEx(64)
            self.featex2 = FeatEx(FEATEX_OUT)
            self.dropout = nn.Dropout(dropout)
            self.output = nn.Linear(FEATEX_OUT * 3 * 3, k)  # 48 -> 24 -> 12 -> 6 -> 3

        def forward(self, x):
            x = self.stem_norm(self.stem_pool(torch.relu(self.stem_conv(x))))
            x = self.featex2(self.featex1(x))
            return self.output(self.dropout(torch.flatten(x, 1)))

    class ResidualModule(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
            self.shortcut_norm = nn.BatchNorm2d(cout)
            self.separable1 = SeparableConvBn(cin, cout)
            self.separable2 = SeparableConvBn(cout, cout, relu=False)
            self.pool = pool3x3(2)

        def forward(self, x):
            residual = self.shortcut_norm(self.shortcut(x))
            return self.pool(self.separable2(self.separable1(x))) + residual

    class MiniXception(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.stem1 = ConvBn(1, 8, padding=0)
            self.stem2 = ConvBn(8, 8, padding=0)
            widths = [8, 16, 32, 64, 128]
            self.modules_ = nn.ModuleList([ResidualModule(a, b) for a, b in zip(widths, widths[1:])])
            self.head = nn.Conv2d(128, k, 3, padding=1)

        def forward(self, x):
            x = self.stem2(self.stem1(x))
            for m in self.modules_:
                x = m(x)
            return self.head(x).mean(dim=(2, 3))

    class Vgg(nn.Module):
        def __init__(self, k, dropout):
            super().__init__()
            layers, cin = [], 1
            for c in [64, 128, 256, 512]:
                layers += [ConvBn(cin, c), ConvBn(c, c), nn.MaxPool2d(2)]
                cin = c
            self.features = nn.Sequential(*layers)
            self.dense = nn.Linear(512 * 3 * 3, 512)
            self.dropout = nn.Dropout(dropout)
            self.output = nn.Linear(512, k)

        def forward(self, x):
            x = torch.flatten(self.features(x), 1)
            return self.output(self.dropout(torch.relu(self.dense(x))))

    return {
        "seed-cnn": lambda: SeedCnn(NUM_CLASSES, DROPOUT["seed-cnn"]),
        "dexpression": lambda: DeXpression(NUM_CLASSES, DROPOUT["dexpression"]),
        "mini-xception": lambda: MiniXception(NUM_CLASSES),
        "vgg": lambda: Vgg(NUM_CLASSES, DROPOUT["vgg"]),
    }


def run_torch(a):
    import torch

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(a.threads)
    builders = torch_models()
    if a.params_only:
        return [params_line("torch", name, torch_params(builders[name]())) for name in selected(a)]

    torch.manual_seed(0)
    model = builders[a.model]()
    params = torch_params(model)
    check_params(a.model, params)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(a.batch, 1, SIDE, SIDE).contiguous(memory_format=fmt)
    y = torch.randint(0, NUM_CLASSES, (a.batch,))

    times = []
    if a.infer:
        model.eval()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16)
        with torch.inference_mode(), autocast:
            for i in range(a.warmup + a.steps):
                t = time.perf_counter()
                model(x)
                if i >= a.warmup:
                    times.append(time.perf_counter() - t)
    else:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        loss_fn = torch.nn.CrossEntropyLoss()
        for i in range(a.warmup + a.steps):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
        assert torch.isfinite(loss).item()
    extra = {"torch": torch.__version__, "channels_last": a.channels_last}
    return [result("torch", a, params, times, extra)]


def torch_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------
# Keras 3 on TensorFlow (NHWC; 'same' padding where ferrite pads explicitly)
# --------------------------------------------------------------------------------------------

def keras_models():
    import keras
    from keras import layers as L

    def bn():
        # Burn's BatchNorm: epsilon 1e-5, momentum 0.1 (PyTorch convention) = Keras momentum 0.9.
        return L.BatchNormalization(momentum=0.9, epsilon=1e-5)

    def conv_bn(x, c, kernel=3, stride=1, padding="same", relu=True):
        x = L.Conv2D(c, kernel, strides=stride, padding=padding, use_bias=False)(x)
        x = bn()(x)
        return L.ReLU()(x) if relu else x

    def sep_bn(x, c, relu=True):
        # SeparableConv2D = depthwise 3x3 (multiplier 1) then pointwise 1x1, as blocks.rs.
        x = L.SeparableConv2D(c, 3, padding="same", use_bias=False)(x)
        x = bn()(x)
        return L.ReLU()(x) if relu else x

    def inputs():
        return keras.Input((SIDE, SIDE, 1))

    def seed_cnn():
        i = inputs()
        x = i
        for n, (c, s) in enumerate([(16, 1), (16, 2), (32, 1), (32, 2), (64, 1), (64, 2)]):
            x = conv_bn(x, c, stride=s)
            if n in (1, 3):
                x = L.Dropout(DROPOUT["seed-cnn"])(x)
        x = conv_bn(x, NUM_CLASSES, relu=False)
        return keras.Model(i, L.GlobalAveragePooling2D()(x), name="seed_cnn")

    def featex(x):
        a = L.Conv2D(96, 1, activation="relu")(x)
        a = L.Conv2D(208, 3, padding="same", activation="relu")(a)
        b = L.MaxPooling2D(3, strides=1, padding="same")(x)
        b = L.Conv2D(64, 1, activation="relu")(b)
        x = bn()(L.Concatenate()([a, b]))
        return L.MaxPooling2D(3, strides=2, padding="same")(x)

    def dexpression():
        i = inputs()
        x = L.Conv2D(64, 5, strides=2, padding="same", activation="relu")(i)
        x = bn()(L.MaxPooling2D(3, strides=2, padding="same")(x))
        x = featex(featex(x))
        x = L.Dropout(DROPOUT["dexpression"])(L.Flatten()(x))
        return keras.Model(i, L.Dense(NUM_CLASSES)(x), name="dexpression")

    def mini_xception():
        i = inputs()
        x = conv_bn(i, 8, padding="valid")
        x = conv_bn(x, 8, padding="valid")
        for c in [16, 32, 64, 128]:
            residual = bn()(L.Conv2D(c, 1, strides=2, padding="same", use_bias=False)(x))
            x = sep_bn(x, c)
            x = sep_bn(x, c, relu=False)
            x = L.MaxPooling2D(3, strides=2, padding="same")(x)
            x = L.Add()([x, residual])
        x = L.Conv2D(NUM_CLASSES, 3, padding="same")(x)
        return keras.Model(i, L.GlobalAveragePooling2D()(x), name="mini_xception")

    def vgg():
        i = inputs()
        x = i
        for c in [64, 128, 256, 512]:
            x = conv_bn(x, c)
            x = conv_bn(x, c)
            x = L.MaxPooling2D(2)(x)
        x = L.Dense(512, activation="relu")(L.Flatten()(x))
        x = L.Dropout(DROPOUT["vgg"])(x)
        return keras.Model(i, L.Dense(NUM_CLASSES)(x), name="vgg")

    return {"seed-cnn": seed_cnn, "dexpression": dexpression,
            "mini-xception": mini_xception, "vgg": vgg}


def run_keras(a):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np
    import tensorflow as tf

    # Must happen before TF's runtime starts (before the first op).
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    import keras

    keras.config.set_image_data_format("channels_last")
    builders = keras_models()
    if a.params_only:
        return [params_line("keras", name, keras_params(builders[name]())) for name in selected(a)]

    keras.utils.set_random_seed(0)
    model = builders[a.model]()
    params = keras_params(model)
    check_params(a.model, params)
    x = tf.random.normal((a.batch, SIDE, SIDE, 1), dtype=tf.float32)
    y = tf.random.uniform((a.batch,), 0, NUM_CLASSES, dtype=tf.int32)
    jit = {"off": False, "on": True, "auto": "auto"}[a.jit]

    times = []
    if a.infer:
        xla = {"off": False, "on": True, "auto": None}[a.jit]
        forward = tf.function(lambda t: model(t, training=False), jit_compile=xla)
        for i in range(a.warmup + a.steps):
            t = time.perf_counter()
            forward(x).numpy()  # (batch, 7): forces completion, negligible copy
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
        resolved_jit = xla if xla is not None else "auto"
    else:
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        for i in range(a.warmup + a.steps):
            t = time.perf_counter()
            loss = model.train_on_batch(x, y)  # compiled train step; returns a numpy scalar
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
        assert np.isfinite(loss)
        resolved_jit = bool(model.jit_compile)
    extra = {"tensorflow": tf.__version__, "keras": keras.__version__, "xla": resolved_jit}
    return [result("keras", a, params, times, extra)]


def keras_params(model):
    return int(sum(int(np_prod(w.shape)) for w in model.trainable_weights))


def np_prod(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


# --------------------------------------------------------------------------------------------

def selected(a):
    return MODELS if a.model == "all" else [a.model]


def check_params(name, params):
    assert params == FERRITE_PARAMS[name], (
        f"{name}: {params:,} trainable parameters, ferrite has {FERRITE_PARAMS[name]:,}")


def params_line(framework, name, params):
    check_params(name, params)
    return {"framework": framework, "model": name, "params": params,
            "ferrite_params": FERRITE_PARAMS[name], "match": True}


def result(framework, a, params, times, extra):
    total = sum(times)
    out = {
        "framework": framework
        + ("-channels-last" if getattr(a, "channels_last", False) else "")
        + ("-bf16" if getattr(a, "bf16", False) else ""),
        "model": a.model,
        "params": params,
        "batch": a.batch,
        "images_per_second": round(a.batch * len(times) / total, 2) if total > 0 else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "mode": "infer" if a.infer else "train",
        "threads": a.threads,
        "steps": len(times),
        "warmup": a.warmup,
    }
    if a.infer:
        out["median_latency_ms"] = round(statistics.median(times) * 1e3, 3)
    out.update(extra)
    return out


def main():
    a = parse_args()
    if a.steps < 1:
        sys.exit("--steps must be at least 1")
    os.environ["OMP_NUM_THREADS"] = str(a.threads)  # before either framework loads
    lines = run_torch(a) if a.framework == "torch" else run_keras(a)
    for line in lines:
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
