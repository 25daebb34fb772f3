"""Evaluation metrics.

Modules: `tapvid` (2D TAP-Vid: occlusion accuracy, pts-within-δ, Jaccard-δ)
and `tapvid3d` (TAPVid-3D, with the official depth scalings and local
neighbourhoods), both numerically equivalent to google-deepmind/tapnet.
Import the functions from their modules, e.g.
`from tapkit.metrics.tapvid3d import compute_tapvid3d_metrics`.
"""
