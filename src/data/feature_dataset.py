"""ImageNet ResNet-18 features of CIFAR-10 / CIFAR-100 (made by feature_extractor.py).

The reference reads `{features, labels}` .pt files from fixed paths relative to the
working directory, with no transform and no augmentation; `dataset.features_root`
(default ".") keeps those paths and makes them configurable.
"""

from __future__ import annotations

from src.data.raw import RawDataset


class FeatureDataset:
    official_sizes = (50000, 10000)
    input_shape = (512,)
    fixed_shape = False

    def __init__(self, source: str, num_classes: int):
        self.source = source
        self.num_classes = num_classes

    def paths(self, config):
        from src.data.feature_files import feature_file_path

        root = config.dataset.features_root
        return feature_file_path(root, self.source, train=True), feature_file_path(root, self.source, train=False)

    def files_present(self, config) -> bool:
        return all(p.exists() for p in self.paths(config))

    def load(self, config, device) -> RawDataset:
        from src.data.feature_files import load_feature_file

        train_path, test_path = self.paths(config)
        train_x, train_y = load_feature_file(train_path)
        test_x, test_y = load_feature_file(test_path)
        return RawDataset(
            train_x=train_x.to(device), train_y=train_y.to(device),
            test_x=test_x.to(device), test_y=test_y.to(device),
            num_classes=self.num_classes, input_shape=(train_x.shape[1],),
        )

    def probe_sizes(self, config):
        """Sizes of the files on disk without reading them into memory (mmap)."""
        import torch

        sizes = []
        for path in self.paths(config):
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            sizes.append(int(data["labels"].shape[0]))
        return tuple(sizes)
