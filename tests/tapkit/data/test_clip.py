"""The in-memory clip (tapkit.data.clip): track-only fields."""

import numpy as np

from tapkit.data import clip as clip_lib


def test_clip_of_2d_tracks_with_image_size():
  uv = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
  clip = clip_lib.Clip(tracks_xyz=None, tracks_uv=uv, visibility=np.ones((3, 4), bool),
                       queries_xyt=np.asarray([[0, 0, 0.0], [0, 0, 1.4], [0, 0, 1.6],
                                               [0, 0, 2.0]], np.float32),
                       intrinsics=None, image_size=(48, 64), name='v')
  assert clip.num_frames == 3 and clip.num_tracks == 4
  assert clip.tracks is uv and clip.frame_size == (48, 64) and not clip.has_frames
  np.testing.assert_array_equal(clip.query_frames, [0, 1, 2, 2])
  # Stored frames win over image_size.
  framed = clip.replace(raw_frames=np.zeros((3, 8, 10, 3), np.uint8))
  assert framed.frame_size == (8, 10)
