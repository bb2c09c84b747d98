"""Compatibility: noise profiles moved to :mod:`naflow_aug.noise.profiles`; these names still import from
here."""

from naflow_aug.noise.profiles import (
    NoiseProfile,
    calibrate,
    calibrate_folder,
    find_pairs,
    pair_files,
    profile_source,
)

__all__ = ["NoiseProfile", "calibrate", "calibrate_folder", "find_pairs", "pair_files", "profile_source"]
