"""The digits splits, loaded when this module is imported.

The sandbox's zygote preloads this module, so every forked evaluation child finds the
data already in memory instead of importing scikit-learn again.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from llmatic.training import Split

#: Fractions of the 1,797 images for (train, validation, test).
FRACTIONS = (0.6, 0.2, 0.2)
#: The split is fixed (independent of the search seed) so that runs are comparable.
SPLIT_SEED = 0


def load_splits() -> dict[str, Split]:
    """Stratified train/val/test splits of scikit-learn's 8x8 digits, pixels in [0, 1]."""
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, train_size=FRACTIONS[0], stratify=y, random_state=SPLIT_SEED
    )
    val_share = FRACTIONS[1] / (FRACTIONS[1] + FRACTIONS[2])
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, train_size=val_share, stratify=y_rest, random_state=SPLIT_SEED
    )
    as_split = lambda a, b: Split(torch.from_numpy(a), torch.from_numpy(b))
    return {
        "train": as_split(x_train, y_train),
        "val": as_split(x_val, y_val),
        "test": as_split(x_test, y_test),
    }


SPLITS = load_splits()
