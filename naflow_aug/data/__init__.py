"""Data in: SIDD readers, paired and clean-only folders, the simulated camera, image I/O.

Every source yields one record, :class:`Pair` (SIDD metadata optional); :func:`scan_source` lists any
source, :func:`split_pairs` divides pairs by scene instance.
"""

from naflow_aug.data.cache import ImageCache, open_cache
from naflow_aug.data.folders import (
    CleanFolderDataset,
    PairedFolderDataset,
    PairRecord,
    iter_images,
    read_manifest,
    scan_paired_folders,
)
from naflow_aug.data.hdf5 import HDF5PairDataset
from naflow_aug.data.images import image_size, load_image, read_image, to_tensor, to_uint8, write_png
from naflow_aug.data.pairs import Pair, SiddMeta, load_split, select_instances, split_pairs
from naflow_aug.data.prepare import prepare_cache, verify_cache
from naflow_aug.data.sidd import (
    ClassBalancedSampler,
    PairedCropDataset,
    SiddMediumDataset,
    SiddPair,
    parse_instance_folder,
    random_paired_crop,
    scan_sidd_medium,
)
from naflow_aug.data.simcam import DEFAULT_CAMERAS, noise_statistics, write_simulated_sidd
from naflow_aug.data.sources import scan_source, source_kind

__all__ = [
    "ImageCache",
    "open_cache",
    "prepare_cache",
    "verify_cache",
    "HDF5PairDataset",
    "CleanFolderDataset",
    "Pair",
    "PairRecord",
    "PairedFolderDataset",
    "SiddMeta",
    "iter_images",
    "read_manifest",
    "scan_paired_folders",
    "scan_source",
    "select_instances",
    "source_kind",
    "split_pairs",
    "DEFAULT_CAMERAS",
    "noise_statistics",
    "write_simulated_sidd",
    "ClassBalancedSampler",
    "PairedCropDataset",
    "SiddMediumDataset",
    "SiddPair",
    "image_size",
    "load_image",
    "load_split",
    "parse_instance_folder",
    "random_paired_crop",
    "read_image",
    "scan_sidd_medium",
    "to_tensor",
    "to_uint8",
    "write_png",
]
