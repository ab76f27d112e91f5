"""Times the `fer` package's face pipeline (its default: OpenCV Haar cascade, mtcnn=False).

usage: fer_faces.py IMG... [--rounds 20] [--warmup 1] [--threads T] [--no-tflite]

Each image is read once with cv2.imread (BGR, outside the timings). Per round:
  detect_ms    detector.find_faces(img): BGR->grey + Haar detectMultiScale
  classify_ms  detector.detect_emotions(img, face_rectangles=faces): everything after detection
               for the found faces (grey, pad, square crops, resize to the model's 64x64,
               normalise, the emotion model, labelling)
  model_ms     the emotion model alone inside classify_ms (fer's _classify_emotions)
  total_ms     detector.detect_emotions(img): the whole pipeline as a user calls it
Prints one JSON line per image with the median of each over the rounds and the face count.
fer's default classifier is its quantized TFLite model (use_tflite=True), run one face at a
time; --no-tflite uses its Keras .hdf5 model instead (one batch of all faces).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time
import warnings


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=1, help="untimed full rounds first")
    p.add_argument("--threads", type=int, default=None,
                   help="cv2.setNumThreads and TF intra/inter-op threads (default: libraries' own)")
    p.add_argument("--no-tflite", action="store_true", help="fer's Keras model instead of TFLite")
    a = p.parse_args()
    if a.rounds < 1:
        sys.exit("--rounds must be at least 1")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore")  # pkg_resources deprecation etc.
    import cv2
    import tensorflow as tf

    if a.threads is not None:
        cv2.setNumThreads(a.threads)
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    import fer
    try:
        from fer import FER  # older releases re-export it
    except ImportError:
        from fer.fer import FER  # 25.x: only in fer.fer
    import logging

    logging.getLogger("fer").setLevel(logging.WARNING)

    detector = FER(mtcnn=False, use_tflite=not a.no_tflite)

    # Time the model call inside detect_emotions without changing what it does.
    model_times = []
    inner = detector._classify_emotions

    def timed_classify(gray_faces):
        t = time.perf_counter()
        out = inner(gray_faces)
        if hasattr(out, "numpy"):
            out = out.numpy()
        model_times.append(time.perf_counter() - t)
        return out

    detector._classify_emotions = timed_classify

    for path in a.images:
        img = cv2.imread(path)
        if img is None:
            sys.exit(f"cannot read {path}")
        detect, classify, model, total = [], [], [], []
        faces_found = None
        for r in range(a.warmup + a.rounds):
            t = time.perf_counter()
            faces = detector.find_faces(img)
            t_detect = time.perf_counter() - t

            model_times.clear()
            t = time.perf_counter()
            result = detector.detect_emotions(img, face_rectangles=faces) if len(faces) else []
            t_classify = time.perf_counter() - t
            t_model = sum(model_times)

            t = time.perf_counter()
            full = detector.detect_emotions(img)
            t_total = time.perf_counter() - t

            n = len(faces)
            assert len(full) == n and len(result) == n, (len(full), len(result), n)
            faces_found = n
            if r >= a.warmup:
                detect.append(t_detect)
                classify.append(t_classify)
                model.append(t_model)
                total.append(t_total)
        ms = lambda xs: round(statistics.median(xs) * 1e3, 3)
        print(json.dumps({
            "framework": "fer",
            "image": path,
            "width": img.shape[1],
            "height": img.shape[0],
            "faces": faces_found,
            "rounds": a.rounds,
            "detect_ms": ms(detect),
            "classify_ms": ms(classify),
            "model_ms": ms(model),
            "total_ms": ms(total),
            "classifier": "keras" if a.no_tflite else "tflite",
            "threads": a.threads,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
            "fer": getattr(fer, "__version__", "?"),
            "opencv": cv2.__version__,
            "tensorflow": tf.__version__,
        }), flush=True)


if __name__ == "__main__":
    main()
