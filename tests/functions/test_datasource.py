"""CreateDataSource refuses data that would only fail later, with a message naming the problem."""

from __future__ import annotations

import boto3
import numpy as np
import pytest
from moto import mock_aws

from stepml import mnist
from stepml.datasource import create_image_datasource
from stepml.errors import DataError
from stepml.storage import Storage

NAMES = list(mnist.MNIST_FILES)


@pytest.fixture
def storage():
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="datasource-test")
        yield Storage("datasource-test")


def upload(storage: Storage, train_images, train_labels, test_images, test_labels) -> dict[str, str]:
    arrays = dict(zip(NAMES, (train_images, train_labels, test_images, test_labels)))
    for name, array in arrays.items():
        storage.put_bytes(f"in/{name}", mnist.write_idx(array.astype(np.uint8)))
    return {name: f"in/{name}" for name in NAMES}


def images(n, side=28):
    return np.random.default_rng(0).integers(0, 255, size=(n, side, side))


def test_a_valid_datasource_has_arrays_statistics_and_a_descriptor(storage):
    files = upload(storage, images(20), np.arange(20) % 10, images(10), np.arange(10) % 10)
    descriptor = create_image_datasource(storage, "run-1", files)
    assert descriptor["image_shape"] == [28, 28] and descriptor["n_features"] == 784
    assert descriptor["statistics"]["train"]["class_distribution"]["3"] == 2
    assert storage.get_npy(descriptor["arrays"]["train_images"]).shape == (20, 784)


def test_train_and_test_images_must_have_one_shape(storage):
    files = upload(storage, images(20), np.arange(20) % 10, images(10, side=20), np.arange(10) % 10)
    with pytest.raises(DataError, match=r"test images are \[20, 20\] pixels but train images are \[28, 28\]"):
        create_image_datasource(storage, "run-1", files)


def test_a_single_class_cannot_train_a_classifier(storage):
    files = upload(storage, images(20), np.full(20, 4), images(10), np.arange(10) % 10)
    with pytest.raises(DataError, match="single class"):
        create_image_datasource(storage, "run-1", files)


def test_oversized_images_are_refused_before_any_model_is_built(storage):
    files = upload(storage, images(2, side=300), np.array([0, 1]), images(2, side=300), np.array([0, 1]))
    with pytest.raises(DataError, match="largest side allowed is 256"):
        create_image_datasource(storage, "run-1", files)


def test_a_truncated_file_is_a_data_error_naming_it(storage):
    files = upload(storage, images(20), np.arange(20) % 10, images(10), np.arange(10) % 10)
    raw = storage.get_bytes(files[NAMES[1]])
    storage.put_bytes(files[NAMES[1]], raw[:-3])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        create_image_datasource(storage, "run-1", files)
