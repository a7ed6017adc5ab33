"""Keras side of bench/augment.py: the notebook's four augmentation layers (from
../shared/bench/keras_reference.py) on the same 224-px photos, one thread, batches of 64 as the
notebook feeds them. Run with the Keras venv's python; prints JSON.

    /tmp/kerasenv/bin/python bench/keras_augment.py PHOTOS.npy [--reference ../shared/bench/keras_reference.py]
"""

import argparse
import importlib.util
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("photos")
    parser.add_argument("--reference", default="../shared/bench/keras_reference.py")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    spec = importlib.util.spec_from_file_location("keras_reference", args.reference)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    augment = reference.make_augmenter()

    photos = np.load(args.photos).astype("float32")
    batches = [photos[i : i + args.batch] for i in range(0, len(photos), args.batch)]
    augment(batches[0])
    start = time.perf_counter()
    for batch in batches:
        np.asarray(augment(batch))
    seconds = time.perf_counter() - start
    print(json.dumps({"images": len(photos), "seconds": seconds, "images_per_s": len(photos) / seconds,
                      "tensorflow": tf.__version__, "batch": args.batch}))


if __name__ == "__main__":
    main()
