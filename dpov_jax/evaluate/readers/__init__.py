"""Readers for the Probe3D evaluation datasets, one module per dataset.

* `spair`: SPair-71k, official layout: `PairAnnotation/{trn,val,test}/*.json`,
  `ImageAnnotation/<class>/<image>.json`, `JPEGImages/<class>/<image>.jpg`.
* `navi`: NAVI as Probe3D's `resize_navi.py` leaves it:
  `<object>/<collection>/{images,depth}/downsampled_<id>.{jpg,png}` and
  `<object>/<collection>/annotations.json`.
* `nyu`: NYUv2 as Probe3D uses it: the test pickle (read only through the one
  restricted unpickler of `tapkit.io`, numpy arrays only, or after conversion to
  `.npz`) and GeoNet `.mat` training files.

Every reader validates what it returns and raises `DatasetFormatError` (a
ValueError) whose message starts with the file and names the field. The public
names of all three are importable from here.
"""

from dpov_jax.evaluate.readers.common import (IMAGENET_MEAN, IMAGENET_STD, DatasetFormatError,
                                              normalize_image)
from dpov_jax.evaluate.readers.navi import (depth_to_normals, load_navi_pair, load_navi_view,
                                            navi_bbox_crop, navi_instances, navi_pairs, navi_pose,
                                            parse_navi, quaternion_to_matrix,
                                            read_navi_annotations, read_navi_depth)
from dpov_jax.evaluate.readers.nyu import (GEONET_BAD_INDICES, NYU_FIELDS, geonet_file_list,
                                           nyu_test_items, read_geonet_mat, read_nyu_test)
from dpov_jax.evaluate.readers.spair import (SPAIR_CLASS_IDS, SPAIR_SPLIT_DIRS, SPairDataset,
                                             pad_square, read_spair_image_annotation,
                                             read_spair_pair_annotation, spair_scale_keypoints)

__all__ = [
    'IMAGENET_MEAN', 'IMAGENET_STD', 'DatasetFormatError', 'normalize_image',
    'depth_to_normals', 'load_navi_pair', 'load_navi_view', 'navi_bbox_crop', 'navi_instances',
    'navi_pairs', 'navi_pose', 'parse_navi', 'quaternion_to_matrix', 'read_navi_annotations',
    'read_navi_depth', 'GEONET_BAD_INDICES', 'NYU_FIELDS', 'geonet_file_list', 'nyu_test_items',
    'read_geonet_mat', 'read_nyu_test', 'SPAIR_CLASS_IDS', 'SPAIR_SPLIT_DIRS', 'SPairDataset',
    'pad_square', 'read_spair_image_annotation', 'read_spair_pair_annotation',
    'spair_scale_keypoints',
]
