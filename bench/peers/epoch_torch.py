"""Wall time of one full PyTorch training epoch of DeXpression on the real FER2013 Training rows,
data loading and augmentation included: the peer of `ferrite train --model dexpression --epochs 1`.

usage:
  epoch_torch.py [--csv fer2013.csv[.gz]] [--workers 2] [--threads N] [--batch 64] [--limit N]
                 [--no-augment] [--seed 0] [--self-test]

Stages:
  load   pandas.read_csv + one np.fromstring over the pixel strings, rows with Usage == "Training"
         kept (28,709), as uint8 (N, 48, 48) and int64 labels.
  epoch  DataLoader(batch_size=64, shuffle=True, num_workers=W, persistent_workers=W > 0,
         drop_last=False) over a map-style Dataset whose __getitem__ augments one face with torch
         ops, then model.train() + Adam (lr 1e-3, eps 1e-7) + cross-entropy over every batch.
         Timed from the DataLoader's construction (worker start-up included) to the last
         optimizer step.

Augmentation: ferrite's recipe (crates/ferrite-data/src/augment.rs, Keras ImageDataGenerator
semantics): rotation uniform in +-10 degrees, x and y zoom drawn independently in [0.9, 1.1]
(above 1 zooms out), width/height shift uniform in +-0.1 of the side, horizontal flip with
p = 0.5, fill mode nearest. Each output pixel is inverse-mapped to the input through
rotation . (zoom . p + shift) about the image centre, exactly as augment.rs `warp`, then sampled
bilinearly: here as one affine_grid + grid_sample(mode="bilinear", padding_mode="border",
align_corners=False); border padding clamps the sample point into the image, which gives the
same value as Keras/ferrite "nearest" (clamped indices) under bilinear interpolation. The flip
is folded into the same matrix (it negates the output x coordinate, i.e. mirrors the warped
image, as augment.rs does after the warp). Pixels are then scaled to [-1, 1] (x / 127.5 - 1);
input is (1, 48, 48) float32.

--self-test checks the warp against a direct NumPy port of augment.rs (identity, flip, shift
direction, random recipe draws) and exits.

Prints one JSON line: {"framework", "model", "rows", "load_s", "epoch_s", "total_s",
"images_per_second", "workers", "threads", "torch", ...}.
"""
import argparse
import json
import math
import os
import sys
import time

DEFAULT_CSV = "/work/shared/data/fer2013/fer2013-train-publictest.csv.gz"
SIDE = 48
# ferrite's AugmentConfig::recipe()
ROTATION_DEG = 10.0
ZOOM = 0.1
WIDTH_SHIFT = 0.1
HEIGHT_SHIFT = 0.1


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", default=DEFAULT_CSV)
    p.add_argument("--workers", type=int, default=2, help="DataLoader num_workers")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--limit", type=int, default=0, help="use only the first N Training rows (0 = all)")
    p.add_argument("--no-augment", action="store_true", help="all ranges 0: the warp is the identity")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--self-test", action="store_true", help="check the warp against augment.rs, exit")
    return p.parse_args()


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------

def affine_theta(theta_deg, shift_x, shift_y, zoom_x, zoom_y, flip):
    """The (2, 3) affine_grid matrix of augment.rs `warp` (+ flip), for a 48x48 output.

    augment.rs, in pixels about the centre c = 47/2 (x = column, y = row):
        x = zoom_x * u + shift_x,  y = zoom_y * v + shift_y          (u, v: output offsets)
        in_x = cos * x - sin * y,  in_y = sin * x + cos * y
    affine_grid (align_corners=False) uses normalised n = offset * 2 / 48 on both axes, so the
    linear part is unchanged and the shift is scaled by 2 / 48. A flip mirrors the output
    columns: u -> -u, i.e. the first column of the linear part changes sign.
    """
    t = math.radians(theta_deg)
    c, s = math.cos(t), math.sin(t)
    f = -1.0 if flip else 1.0
    k = 2.0 / SIDE
    return [
        [c * zoom_x * f, -s * zoom_y, (c * shift_x - s * shift_y) * k],
        [s * zoom_x * f, c * zoom_y, (s * shift_x + c * shift_y) * k],
    ]


def warp(image_u8, params):
    """image_u8: (48, 48) uint8 tensor -> (1, 48, 48) float32 tensor, values 0..255."""
    import torch
    import torch.nn.functional as F

    img = image_u8.to(torch.float32).view(1, 1, SIDE, SIDE)
    theta = torch.tensor([affine_theta(*params)], dtype=torch.float32)
    grid = F.affine_grid(theta, (1, 1, SIDE, SIDE), align_corners=False)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(1, SIDE, SIDE)


def draw(augment):
    """One image's random draws, in the order/ranges of augment.rs `Augmenter::draw`.
    torch's RNG: DataLoader seeds each worker differently (base_seed + worker id)."""
    import torch

    if not augment:
        return (0.0, 0.0, 0.0, 1.0, 1.0, False)
    u = torch.rand(6).tolist()
    sym = lambda r, x: (2.0 * x - 1.0) * r  # uniform in [-r, r]
    return (
        sym(ROTATION_DEG, u[0]),
        sym(WIDTH_SHIFT, u[1]) * SIDE,
        sym(HEIGHT_SHIFT, u[2]) * SIDE,
        1.0 + sym(ZOOM, u[3]),
        1.0 + sym(ZOOM, u[4]),
        u[5] < 0.5,
    )


def make_dataset(images, labels, augment):
    import torch
    from torch.utils.data import Dataset

    class FerDataset(Dataset):
        def __init__(self, images, labels, augment):
            self.images = torch.from_numpy(images)  # (N, 48, 48) uint8
            self.labels = torch.from_numpy(labels)  # (N,) int64
            self.augment = augment

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            x = warp(self.images[i], draw(self.augment))
            return x / 127.5 - 1.0, self.labels[i]

    return FerDataset(images, labels, augment)


# --------------------------------------------------------------------------------------------
# Self-test: direct port of augment.rs warp/bilinear/fill_index (nearest) + flip
# --------------------------------------------------------------------------------------------

def ferrite_reference(image, theta_deg, shift_x, shift_y, zoom_x, zoom_y, flip):
    import numpy as np

    n = SIDE
    centre = (n - 1) / 2.0
    s, c = math.sin(math.radians(theta_deg)), math.cos(math.radians(theta_deg))
    img = image.astype(np.float64)
    at = lambda xi, yi: img[min(max(yi, 0), n - 1), min(max(xi, 0), n - 1)]
    out = np.zeros((n, n))
    for row in range(n):
        for col in range(n):
            x = (col - centre) * zoom_x + shift_x
            y = (row - centre) * zoom_y + shift_y
            ix, iy = c * x - s * y + centre, s * x + c * y + centre
            x0, y0 = math.floor(ix), math.floor(iy)
            fx, fy = ix - x0, iy - y0
            top = at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx
            bottom = at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx
            out[row, col] = top * (1 - fy) + bottom * fy
    return out[:, ::-1] if flip else out


def self_test():
    import numpy as np
    import torch

    torch.manual_seed(0)
    gradient = ((np.arange(SIDE * SIDE) % SIDE) * 5 + np.arange(SIDE * SIDE) // SIDE).astype(np.uint8)
    gradient = gradient.reshape(SIDE, SIDE)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (SIDE, SIDE), dtype=np.uint8)
    report = {}

    ident = warp(torch.from_numpy(gradient), draw(False))[0].numpy()
    report["identity_max_abs_diff"] = float(np.abs(ident - gradient).max())
    assert report["identity_max_abs_diff"] < 1e-3

    flipped = warp(torch.from_numpy(gradient), (0.0, 0.0, 0.0, 1.0, 1.0, True))[0].numpy()
    report["flip_max_abs_diff"] = float(np.abs(flipped - gradient[:, ::-1]).max())
    assert report["flip_max_abs_diff"] < 1e-3 and abs(flipped[0, 0] - gradient[0, 47]) < 1e-3

    # augment.rs shift_moves_content_and_fills_nearest: shift_x = 2 -> out col c = in col c + 2.
    shifted = warp(torch.from_numpy(gradient), (0.0, 2.0, 0.0, 1.0, 1.0, False))[0].numpy()
    assert abs(shifted[0, 10] - gradient[0, 12]) < 1e-3
    assert abs(shifted[0, 47] - gradient[0, 47]) < 1e-3 and abs(shifted[0, 46] - gradient[0, 47]) < 1e-3

    worst = 0.0
    for img in (gradient, noise):
        for _ in range(20):
            p = draw(True)
            ours = warp(torch.from_numpy(img), p)[0].numpy()
            ref = ferrite_reference(img, *p)
            worst = max(worst, float(np.abs(ours - ref).max()))
    report["random_recipe_vs_ferrite_port_max_abs_diff"] = worst
    assert worst < 0.05, worst  # float32 rounding of the sample points only

    ds = make_dataset(np.stack([gradient, noise]), np.array([0, 1], dtype=np.int64), True)
    xs = torch.stack([ds[i % 2][0] for i in range(200)])
    report["normalised_min"], report["normalised_max"] = float(xs.min()), float(xs.max())
    assert xs.shape == (200, 1, SIDE, SIDE) and xs.dtype == torch.float32
    assert xs.min() >= -1.0 and xs.max() <= 1.0
    report["self_test"] = "ok"
    print(json.dumps(report), flush=True)


# --------------------------------------------------------------------------------------------
# Load + epoch
# --------------------------------------------------------------------------------------------

def load(path, limit):
    import numpy as np
    import pandas as pd

    df = pd.read_csv(path)
    df = df[df["Usage"] == "Training"]
    if limit:
        df = df.iloc[:limit]
    pixels = np.fromstring(" ".join(df["pixels"]), dtype=np.uint8, sep=" ")
    images = pixels.reshape(len(df), SIDE, SIDE)
    labels = df["emotion"].to_numpy(dtype=np.int64, copy=True)  # pandas 3: views are read-only
    return images, labels


def main():
    a = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)  # before torch loads
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_peers  # defines builders only; its main() runs under __name__ == "__main__"
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(a.threads)
    if a.self_test:
        return self_test()

    start = time.perf_counter()
    images, labels = load(a.csv, a.limit)
    load_s = time.perf_counter() - start
    rows = len(labels)

    torch.manual_seed(a.seed)
    model = train_peers.torch_models()["dexpression"]()
    train_peers.check_params("dexpression", train_peers.torch_params(model))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    dataset = make_dataset(images, labels, not a.no_augment)

    start = time.perf_counter()
    loader = DataLoader(dataset, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                        persistent_workers=a.workers > 0, drop_last=False)
    batches, seen, loss_sum = 0, 0, 0.0
    for x, y in loader:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        batches += 1
        seen += len(y)
        loss_sum += loss.item() * len(y)
    epoch_s = time.perf_counter() - start
    assert seen == rows and math.isfinite(loss_sum)

    print(json.dumps({
        "framework": "torch",
        "model": "dexpression",
        "rows": rows,
        "load_s": round(load_s, 4),
        "epoch_s": round(epoch_s, 4),
        "total_s": round(load_s + epoch_s, 4),
        "images_per_second": round(rows / epoch_s, 2),
        "workers": a.workers,
        "threads": a.threads,
        "torch": torch.__version__,
        "batches": batches,
        "batch": a.batch,
        "augment": not a.no_augment,
        "mean_loss": round(loss_sum / seen, 4),
    }), flush=True)


if __name__ == "__main__":
    main()
