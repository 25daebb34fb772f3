"""Grain pipeline core: loader determinism, state restore, track transforms."""

import numpy as np
import pytest

from tapkit.data import pipeline


def _example(index: int, num_frames: int = 12, num_tracks: int = 10,
             size=(48, 64)) -> dict[str, np.ndarray]:
  """A track example ([N, T, 2] normalised pixels) of a random clip in front of the camera."""
  rng = np.random.default_rng(index)
  xyz = np.stack([rng.uniform(-1, 1, (num_frames, num_tracks)),
                  rng.uniform(-1, 1, (num_frames, num_tracks)),
                  rng.uniform(2, 4, (num_frames, num_tracks))], -1).astype(np.float32)
  visible = rng.random((num_frames, num_tracks)) < 0.6
  visible[:, 0] = False  # A never-visible track.
  intrinsics = np.array([50.0, 50.0, size[1] / 2, size[0] / 2], np.float32)
  pixels = pipeline.project_to_pixels(xyz, intrinsics)  # [T, N, 2]
  normalised = (pixels + 0.5) / np.array([size[1], size[0]], np.float32)
  return {'tracks': np.ascontiguousarray(np.swapaxes(normalised, 0, 1)),
          'visible': np.ascontiguousarray(visible.T),
          'frame_size': np.asarray(size, np.int32)}


def _loader(seed=0, batch_size=2, length=16, n_clips=7, **kw):
  source = pipeline.SequenceSource([_example(i) for i in range(n_clips)], name='clips')
  transforms = [pipeline.PadOrCropTime(length),
                pipeline.SampleSupportQuery(num_support=4, num_query=3)]
  return pipeline.make_dataloader(source, transforms, batch_size=batch_size,
                                  seed=seed, **kw)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_batches_have_fixed_shapes():
  batch = next(iter(_loader()))
  assert batch['support_tracks'].shape == (2, 4, 16, 2)
  assert batch['support_tracks_visible'].shape == (2, 4, 16, 1)
  assert batch['query_points'].shape == (2, 3, 3)
  assert batch['target_points'].shape == (2, 3, 16, 2)
  assert batch['target_tracks_visible'].shape == (2, 3, 16, 1)
  np.testing.assert_array_equal(batch['boundary_frame'], [12, 12])
  np.testing.assert_array_equal(batch['frame_size'], [[48, 64]] * 2)


def test_same_seed_same_batches_other_seed_differs():
  a = _take(iter(_loader(seed=3)), 6)  # > 1 epoch of 7 clips
  b = _take(iter(_loader(seed=3)), 6)
  _assert_batches_equal(a, b)
  c = _take(iter(_loader(seed=4)), 6)
  assert not np.array_equal(a[0]['query_points'], c[0]['query_points'])


def test_iterator_state_restore_continues_identically():
  loader = _loader(seed=5)
  it = iter(loader)
  _take(it, 3)
  state = it.get_state()
  expected = _take(it, 4)
  restored = iter(_loader(seed=5))
  restored.set_state(state)
  _assert_batches_equal(_take(restored, 4), expected)


def test_shards_are_disjoint_and_cover_an_epoch():
  import grain.python as grain  # pylint: disable=g-import-not-at-top
  source = pipeline.SequenceSource(list(range(8)), name='ints')
  seen = []
  for shard in range(2):
    loader = pipeline.make_dataloader(
        source, [], batch_size=4, seed=1, num_epochs=1,
        shard_options=grain.ShardOptions(shard, 2, drop_remainder=True))
    seen.append(np.concatenate(list(loader)))
  assert set(seen[0]).isdisjoint(seen[1])
  assert sorted(np.concatenate(seen)) == list(range(8))


def test_support_query_disjoint_and_query_frame_visible():
  element = {'tracks': np.random.default_rng(0).random((10, 6, 2)).astype(np.float32),
             'visible': np.random.default_rng(1).random((10, 6)) < 0.5,
             'frame_size': np.array([4, 4], np.int32)}
  element['visible'][3] = False
  sample = pipeline.SampleSupportQuery(num_support=5, num_query=5)
  for seed in range(20):
    out = sample.random_map(element, np.random.default_rng(seed))
    sup, qry = out['support_indices'], out['query_indices']
    assert len(set(sup)) == 5 and len(set(qry)) == 5
    assert set(sup).isdisjoint(qry)
    for q, idx in enumerate(qry):
      frame = int(out['query_points'][q, 0])
      if element['visible'][idx].any():
        assert element['visible'][idx, frame]
      else:
        assert frame == 0
      np.testing.assert_array_equal(out['query_points'][q, 1:], element['tracks'][idx, frame])
      np.testing.assert_array_equal(out['target_points'][q], element['tracks'][idx])
    np.testing.assert_array_equal(out['support_tracks'], element['tracks'][sup])
  with pytest.raises(ValueError, match='at least num_support'):
    pipeline.SampleSupportQuery(6, 5).random_map(element, np.random.default_rng(0))


def test_query_frame_is_uniform_over_visible_frames():
  element = {'tracks': np.zeros((2, 8, 2), np.float32),
             'visible': np.array([[0, 1, 0, 1, 1, 0, 0, 0]] * 2, bool),
             'frame_size': np.array([4, 4], np.int32)}
  sample = pipeline.SampleSupportQuery(num_support=1, num_query=1)
  frames = [int(sample.random_map(element, np.random.default_rng(s))['query_points'][0, 0])
            for s in range(3000)]
  counts = np.bincount(frames, minlength=8)
  assert counts[[0, 2, 5, 6, 7]].sum() == 0
  np.testing.assert_allclose(counts[[1, 3, 4]] / 3000, 1 / 3, atol=0.03)


def test_pad_and_crop_set_boundary_frame():
  element = {'tracks': np.ones((3, 5, 2), np.float32), 'visible': np.ones((3, 5), bool),
             'frame_size': np.array([4, 4], np.int32)}
  padded = pipeline.PadOrCropTime(8).map(element)
  assert padded['tracks'].shape == (3, 8, 2) and int(padded['boundary_frame']) == 5
  assert padded['visible'][:, :5].all() and not padded['visible'][:, 5:].any()
  assert (padded['tracks'][:, 5:] == 0).all()
  cropped = pipeline.PadOrCropTime(4).map(element)
  assert cropped['tracks'].shape == (3, 4, 2) and int(cropped['boundary_frame']) == 4


def test_project_to_pixels_is_float32_with_behind_points_at_principal_point():
  xyz = np.array([[0.0, 0.0, 2.0], [1.0, -0.5, 2.0], [1.0, 1.0, 0.0], [1.0, 1.0, -3.0]],
                 np.float32)
  xy = pipeline.project_to_pixels(xyz, [50.0, 50.0, 32.0, 24.0])
  assert xy.dtype == np.float32
  # (cx, cy) = (32, 24); (32 + 50 * 0.5, 24 - 50 * 0.25) = (57, 11.5); z <= 1e-6 -> (cx, cy).
  np.testing.assert_array_equal(xy, [[32.0, 24.0], [57.0, 11.5], [32.0, 24.0], [32.0, 24.0]])


def test_query_frame_any_is_uniform_before_boundary():
  element = pipeline.PadOrCropTime(8).map(
      {'tracks': np.zeros((2, 5, 3), np.float32), 'visible': np.zeros((2, 5), bool),
       'frame_size': np.array([4, 4], np.int32)})
  sample = pipeline.SampleSupportQuery(1, 1, query_frame='any')
  frames = [int(sample.random_map(element, np.random.default_rng(s))['query_points'][0, 0])
            for s in range(2000)]
  counts = np.bincount(frames, minlength=8)
  assert counts[5:].sum() == 0
  np.testing.assert_allclose(counts[:5] / 2000, 0.2, atol=0.03)
