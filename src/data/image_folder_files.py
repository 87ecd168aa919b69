"""A dataset as image files in torchvision's ImageFolder layout, split into train and test::

    <path>/train/<class name>/<any name>.png   (or .jpg, .bmp, ... torchvision's IMG_EXTENSIONS)
    <path>/test/<class name>/...

Class indices are the class folders of train/ in sorted order (torchvision's find_classes);
test/ may lack some classes but has none of its own. Every image must have the size of the
first: nothing is resized (a resize is a choice the user makes when writing the files).
Grey images (mode L) give [H, W, 1] inputs, anything else is converted to RGB, [H, W, 3];
pixels are read as value / 255, with no statistic of the data applied (see array_files.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.data.memory import load_bytes, require_fits
from src.errors import DataNotFoundError, UserError


def _listing(path: Path):
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    if not path.is_dir():
        raise DataNotFoundError(f"dataset.path: {path} is not a folder (dataset.name: image_folder reads "
                                "<path>/train/<class>/*.png and <path>/test/<class>/*.png)")
    for split in ("train", "test"):
        if not (path / split).is_dir():
            raise DataNotFoundError(f"dataset.path: {path} has no {split}/ folder (expected {split}/<class>/<image>)")
    try:
        classes, class_to_idx = find_classes(path / "train")
    except FileNotFoundError as e:
        raise UserError(f"dataset.path: {path / 'train'}: {e}") from None
    test_classes = sorted(d.name for d in (path / "test").iterdir() if d.is_dir())
    unknown = [c for c in test_classes if c not in class_to_idx]
    if unknown:
        raise UserError(f"dataset.path: {path / 'test'} has class folders {unknown} that train/ does not have "
                        f"(train classes: {classes})")
    files = {}
    for split in ("train", "test"):
        try:
            files[split] = make_dataset(path / split, class_to_idx, IMG_EXTENSIONS, allow_empty=True)
        except FileNotFoundError as e:
            raise UserError(f"dataset.path: {path / split}: {e}") from None
        if not files[split]:
            raise UserError(f"dataset.path: {path / split} holds no images ({', '.join(IMG_EXTENSIONS)})")
    return classes, files


def _first_image(file: str) -> tuple[tuple[int, ...], str]:
    from PIL import Image

    try:
        with Image.open(file) as image:
            grey = image.mode in ("L", "1")
            return (image.height, image.width, 1 if grey else 3), ("L" if grey else "RGB")
    except OSError as e:
        raise UserError(f"dataset.path: {file} is not a readable image ({e})") from None


def probe(path: str | Path) -> tuple[int, int, int, tuple[int, ...]]:
    """(number of classes, train size, test size, input shape) from the folder listing and
    the first image's header; refuses a folder whose images would not fit in memory."""
    path = Path(path)
    classes, files = _listing(path)
    shape, _ = _first_image(files["train"][0][0])
    n_train, n_test = len(files["train"]), len(files["test"])
    per_image = int(np.prod(shape))
    require_fits(load_bytes((n_train + n_test) * per_image, (n_train + n_test) * per_image), f"dataset.path: {path}")
    return len(classes), n_train, n_test, shape


def load(path: str | Path, num_classes: int):
    """((x_train float32 [N, H, W, C], y_train int64), (x_test, y_test), input shape)."""
    from PIL import Image

    path = Path(path)
    classes, files = _listing(path)
    if len(classes) != num_classes:
        raise UserError(f"dataset.path: {path / 'train'} has {len(classes)} class folders ({', '.join(classes[:10])}"
                        f"{', ...' if len(classes) > 10 else ''}) but model.n_classes is {num_classes}")
    shape, mode = _first_image(files["train"][0][0])
    out = []
    for split in ("train", "test"):
        images = np.empty((len(files[split]), *shape), dtype=np.uint8)
        labels = np.empty(len(files[split]), dtype=np.int64)
        for i, (file, label) in enumerate(files[split]):
            try:
                with Image.open(file) as image:
                    pixels = np.asarray(image.convert(mode))
            except OSError as e:
                raise UserError(f"dataset.path: {file} is not a readable image ({e})") from None
            pixels = pixels.reshape(*pixels.shape[:2], -1)
            if pixels.shape != shape:
                raise UserError(f"dataset.path: {file} is {pixels.shape[1]}x{pixels.shape[0]} pixels, but "
                                f"{files['train'][0][0]} is {shape[1]}x{shape[0]}; every image must have one size")
            images[i], labels[i] = pixels, label
        out.append((images.astype(np.float32) / np.float32(255), labels))
    return out[0], out[1], shape
