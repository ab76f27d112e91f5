"""Times loading FER2013 with pandas the two ways people do it; prints `seconds rows` for one.

usage: load_pandas.py split|fromstring <fer2013.csv[.gz]>
  split:      pd.read_csv + per-row str.split -> uint8 array (the common Kaggle notebook way)
  fromstring: pd.read_csv + one np.fromstring(sep=' ') over all rows (the fastest numpy route we know)
"""
import sys
import time

import numpy as np
import pandas as pd

method, path = sys.argv[1], sys.argv[2]
start = time.perf_counter()
df = pd.read_csv(path)
if method == "split":
    pixels = np.stack([np.array(p.split(), dtype=np.uint8) for p in df["pixels"]])
else:
    pixels = np.fromstring(" ".join(df["pixels"]), dtype=np.uint8, sep=" ").reshape(len(df), 2304)
labels = df["emotion"].to_numpy(dtype=np.uint8)
usage = df["Usage"].to_numpy()
assert pixels.shape == (len(df), 2304) and len(labels) == len(usage)
print(f"{time.perf_counter() - start:.4f} {len(df)}")
