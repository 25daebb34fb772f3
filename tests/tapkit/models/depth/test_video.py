"""The video procedure (sizes, preprocessing, windows, stitching) against the original's goldens."""

import numpy as np
import pytest

from tapkit.models.depth import convert, vda, video


def test_resize_sizes(vda_case):
  table = vda_case('resize_sizes')['table']
  assert table.shape[0] >= 10
  for h, w, size, effective, net_h, net_w in table.tolist():
    assert video.effective_input_size(h, w, size) == effective
    assert video.network_size(h, w, effective) == (net_h, net_w)
    assert video.video_network_size(h, w, size) == (net_h, net_w)


def test_preprocess(vda_case):
  case = vda_case('preprocess')
  sizes = case['input_size']
  for j, size in enumerate(sizes.tolist()):
    frame, want = case[f'frame{j}'], case[f'net{j}']  # [Hf, Wf, 3] uint8, [3, h, w]
    net_hw = video.video_network_size(frame.shape[0], frame.shape[1], size)
    assert net_hw == want.shape[1:]
    got = np.asarray(video.preprocess(frame[None], net_hw))[0]
    np.testing.assert_allclose(got.transpose(2, 0, 1), want, rtol=0, atol=1e-5)


def test_window_indices():
  assert video.num_windows(50) == 3 and video.num_windows(13) == 1 and video.num_windows(44) == 2
  idx = video.window_frame_indices(50, 2)
  np.testing.assert_array_equal(idx[:4], [0, 34, 46, 47])
  assert idx[-1] == 49 and idx[10] == 49  # 44 + 10 = 54 is past the end: the last frame
  np.testing.assert_array_equal(video.window_frame_indices(13, 0), np.minimum(np.arange(32), 12))


@pytest.fixture(scope='module')
def vits_model(vda_state_dict):
  config = vda.get_vda_config('vits')
  return vda.VideoDepthAnything(config), convert.params_from_vda_state_dict(
      vda_state_dict('vits'), config)


@pytest.mark.parametrize('name,metric', [('infer_vits_50f_48x64_s70', False),
                                         ('infer_vits_metric_30f_48x64_s70', True)])
def test_infer_video_depth(vda_case, vits_model, name, metric):
  case = vda_case(name)
  module, params = vits_model
  predictor = video.VideoDepthPredictor(module, params, input_size=70)
  assert predictor.network_size(48, 64) == tuple(case['net_hw'])
  raw, stitcher = [], video.WindowStitcher(len(case['frames']), metric)
  depths = np.stack(list(video.iter_video_depth(predictor, case['frames'], metric,
                                                raw_windows=raw, stitcher=stitcher)))
  np.testing.assert_allclose(np.stack(raw), case['window_depths'], rtol=0, atol=1e-4)
  np.testing.assert_allclose(np.asarray(stitcher.scale_shift).reshape(-1, 2), case['scale_shift'],
                             rtol=0, atol=1e-5)
  assert depths.shape == case['depths'].shape and depths.dtype == np.float32
  np.testing.assert_allclose(depths, case['depths'], rtol=0, atol=1e-4)


def test_stitching_is_exact_given_the_raw_windows(vda_case):
  case = vda_case('infer_vits_50f_48x64_s70')
  stitcher = video.WindowStitcher(50)
  out = []
  for raw in case['window_depths']:
    out += stitcher.add(raw)
  out += stitcher.finish()
  np.testing.assert_allclose(np.stack(out), case['depths'], rtol=0, atol=2e-6)
  np.testing.assert_allclose(np.asarray(stitcher.scale_shift), case['scale_shift'], rtol=0,
                             atol=1e-6)


def test_bfloat16_option_runs_close(vda_case, vits_model):
  case = vda_case('infer_vits_metric_30f_48x64_s70')
  module, params = vits_model
  predictor = video.VideoDepthPredictor(module, params, input_size=70, dtype='bfloat16')
  raw = predictor.window(case['frames'][video.window_frame_indices(30, 0)])
  ref = case['window_depths'][0]
  assert raw.dtype == np.float32 and raw.shape == ref.shape
  err = float(np.abs(raw - ref).max())
  assert 0 < err < 0.1 * float(ref.max() - ref.min())  # bfloat16: close, not bit-comparable
