"""What several commands share: logging set-up and the training pairs of a SIDD-Medium-layout folder."""

from __future__ import annotations

import logging


def setup_logging() -> None:
    """INFO logging to stderr, unless the caller (a test, an embedding program) configured it already."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def sidd_training_pairs(data: str, split: str | None) -> list:
    """The pairs of a SIDD-Medium-layout folder, only the split's training instances when one is given."""
    from naflow_aug.data.pairs import split_pairs
    from naflow_aug.data.sidd import scan_sidd_medium

    pairs = list(scan_sidd_medium(data))
    return split_pairs(pairs, split)[0] if split else pairs

