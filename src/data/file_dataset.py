"""Datasets from the user's files: `dataset.name: arrays` (a .npz or .pt file, see
array_files.py) and `dataset.name: image_folder` (torchvision's ImageFolder layout, see
image_folder_files.py), at `dataset.path`, relative to the config file's directory.

Their train split is the official train split of the built-in datasets: the reference's
val / retain / forget split, the forget-set strategies, the memorization estimates and
every metric apply unchanged. The number of classes is model.n_classes (labels outside
0..n_classes-1 are refused); the input shape is read from the files. No augmentation.
"""

from __future__ import annotations

import torch

from src.data.raw import RawDataset


def _tensor(x, device) -> torch.Tensor:
    """float32 [N, d] stays, [N, H, W] / [N, H, W, C] become channels-first [N, C, H, W]."""
    t = torch.from_numpy(x)
    if t.dim() == 3:
        t = t.unsqueeze(1)
    elif t.dim() == 4:
        t = t.permute(0, 3, 1, 2)
    return t.contiguous().to(device)


def _raw(train, test, shape, num_classes, device, path) -> RawDataset:
    (x_train, y_train), (x_test, y_test) = train, test
    if torch.device(device).type == "cuda":  # the host's memory was checked before the run
        from src.data.memory import require_fits

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        require_fits(2 * (x_train.nbytes + x_test.nbytes), f"dataset.path: {path} on {device}", available=free)
    return RawDataset(train_x=_tensor(x_train, device), train_y=torch.from_numpy(y_train).to(device),
                      test_x=_tensor(x_test, device), test_y=torch.from_numpy(y_test).to(device),
                      num_classes=num_classes, input_shape=tuple(shape))


class ArrayFile:
    official_sizes = None  # read from the file (probe_sizes)
    input_shape = None
    num_classes = None  # model.n_classes; the labels are checked against it
    fixed_shape = False

    @staticmethod
    def files_present(config) -> bool:
        return True  # a missing file is refused by probe_sizes, before the run

    @staticmethod
    def shape_for(config) -> tuple[int, ...]:
        from src.data import array_files

        path = config.dataset.path
        return array_files.check_layout(path, array_files.probe(path))

    @staticmethod
    def probe_sizes(config) -> tuple[int, int]:
        from src.data import array_files

        path = config.dataset.path
        info = array_files.probe(path)
        array_files.check_layout(path, info)
        array_files.check_labels(path, config.model.n_classes)
        return info["y_train"][0][0], info["y_test"][0][0]

    @staticmethod
    def load(config, device) -> RawDataset:
        from src.data import array_files

        n = config.model.n_classes
        train, test, shape = array_files.load(config.dataset.path, n)
        return _raw(train, test, shape, n, device, config.dataset.path)


class ImageFolder(ArrayFile):
    @staticmethod
    def shape_for(config) -> tuple[int, ...]:
        from src.data import image_folder_files

        return image_folder_files.probe(config.dataset.path)[3]

    @staticmethod
    def probe_sizes(config) -> tuple[int, int]:
        from src.data import image_folder_files
        from src.errors import UserError

        classes, n_train, n_test, _ = image_folder_files.probe(config.dataset.path)
        if classes != config.model.n_classes:
            raise UserError(f"dataset.path: {config.dataset.path}/train has {classes} class folders but "
                            f"model.n_classes is {config.model.n_classes}")
        return n_train, n_test

    @staticmethod
    def load(config, device) -> RawDataset:
        from src.data import image_folder_files

        n = config.model.n_classes
        train, test, shape = image_folder_files.load(config.dataset.path, n)
        return _raw(train, test, shape, n, device, config.dataset.path)
