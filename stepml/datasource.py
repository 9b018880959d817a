"""Datasources: validated arrays in S3 plus the statistics Amazon ML computed for a datasource.

An image datasource is stored as four .npy arrays (uint8 pixels, flattened rows; int labels)
and a small descriptor, ``datasource.json``, that training and prediction read first.
"""

from __future__ import annotations

import numpy as np

from stepml import mnist, shards
from stepml.errors import DataError
from stepml.runs import RunPaths
from stepml.storage import Storage

MAX_IDX_BYTES = 100 * 1024 * 1024  # the largest MNIST file is 47 MB decompressed
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


MAX_IMAGE_SIDE = 256  # bounds the model's input layer, and so its memory, whatever the upload


def load_split(storage: Storage, files: dict[str, str], split: str,
               versions: dict[str, str | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one split's image and label IDX objects (the recorded versions) from S3."""
    versions = versions or {}

    def read(name: str) -> np.ndarray:
        raw = storage.get_bytes(files[name], max_bytes=MAX_IDX_BYTES, version_id=versions.get(name))
        return mnist.parse_idx(raw, name=name)

    image_name, label_name = SPLITS[split]
    try:
        images, labels = read(image_name), read(label_name)
        mnist.load_pair(images, labels, split)
        if max(images.shape[1:]) > MAX_IMAGE_SIDE:
            raise DataError(f"{image_name}: images of {list(images.shape[1:])} pixels; "
                            f"the largest side allowed is {MAX_IMAGE_SIDE}")
    except ValueError as err:  # IdxFormatError and friends: the data, not the code, is wrong
        raise DataError(str(err)) from None
    return images, labels


def statistics(images: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    counts = np.bincount(labels.astype(np.int64), minlength=n_classes)
    return {
        "rows": int(len(labels)),
        "invalid_rows": 0,  # IDX rows are fixed-size: a bad file fails whole, it cannot be partly read
        "class_distribution": {str(c): int(n) for c, n in enumerate(counts)},
        "pixel_min": int(images.min()),
        "pixel_max": int(images.max()),
        "pixel_mean": round(float(images.mean()), 4),
        "blank_images": int(np.count_nonzero(images.reshape(len(images), -1).max(axis=1) == 0)),
    }


def create_image_datasource(storage: Storage, run_id: str, files: dict[str, str],
                            versions: dict[str, str | None] | None = None, shard_rows: int | None = None) -> dict:
    """IDX objects -> runs/<id>/datasource/{train,test}_{images,labels}.npy + descriptor, and the
    test images again as batch prediction's shards (``stepml.shards``)."""
    paths = RunPaths(run_id)
    n_classes = 10
    descriptor: dict = {"kind": "mnist", "n_classes": n_classes, "arrays": {}, "statistics": {}}
    for split in SPLITS:
        images, labels = load_split(storage, files, split, versions)
        shape = list(images.shape[1:])
        if descriptor.setdefault("image_shape", shape) != shape:
            raise DataError(f"{split} images are {shape} pixels but train images are {descriptor['image_shape']}")
        if split == "train" and len(np.unique(labels)) < 2:
            raise DataError(f"the training labels hold a single class ({int(labels[0])}); a classifier needs two or more")
        rows = images.reshape(len(images), -1)
        for part, array in (("images", rows), ("labels", labels.astype(np.uint8))):
            key = f"{paths.datasource}{split}_{part}.npy"
            storage.put_npy(key, array)
            descriptor["arrays"][f"{split}_{part}"] = key
        descriptor["statistics"][split] = statistics(images, labels, n_classes)
        descriptor[f"{split}_rows"] = int(len(labels))
        if split == "test":
            descriptor["shards"] = shards.write_image_shards(
                storage, paths.datasource + shards.SHARDS_DIR, rows, shard_rows)
    descriptor["n_features"] = int(np.prod(descriptor["image_shape"]))
    descriptor["input_scale"] = 1.0 / 255.0  # pixels are stored as uint8; models see [0, 1]
    storage.put_json(paths.datasource + "statistics.json", descriptor["statistics"])
    storage.put_json(paths.datasource + "datasource.json", descriptor)
    return descriptor


def read_features(storage: Storage, descriptor: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(X float32 scaled to [0, 1], y int64) of one split, as the models expect them."""
    pixels = storage.get_npy(descriptor["arrays"][f"{split}_images"])
    labels = storage.get_npy(descriptor["arrays"][f"{split}_labels"])
    features = pixels.astype(np.float32)
    features *= np.float32(descriptor["input_scale"])
    return features, labels.astype(np.int64)
