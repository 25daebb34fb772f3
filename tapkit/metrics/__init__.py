"""Evaluation metrics, numpy only.

Modules:
  tapvid          2D TAP-Vid: occlusion accuracy, pts-within-δ, Jaccard-δ.
  tapvid3d        TAPVid-3D with the official depth scalings; its
                  local-neighbourhood scaling is vectorised in `tapvid3d_local`
                  and the shared thresholds / input checks are in
                  `tapvid3d_common` (both re-exported by `tapvid3d`).
  pose            camera trajectories: ATE and RPE after Sim(3) alignment.
  depth           TracksTo4D's track-depth metrics (AbsRel, δ < 1.25^k) and
                  pixel reprojection error.
`tapvid` and `tapvid3d` are numerically equivalent to google-deepmind/tapnet.
This package imports none of them; import the functions from their modules, e.g.
`from tapkit.metrics.tapvid3d import compute_tapvid3d_metrics`.
"""
