"""Official .npz / orbax parameter loading, checking and writing."""

import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from trajan3d import checkpoint
from trajan3d import model as model_lib

ExampleInputs = {
    'support_tracks': jnp.zeros((1, 3, 5, 2)),
    'support_tracks_visible': jnp.ones((1, 3, 5, 1)),
    'query_points': jnp.zeros((1, 2, 3)),
    'boundary_frame': jnp.full((1,), 5, jnp.int32),
}


@pytest.fixture(scope='module')
def trajan_npz(golden):
  return golden / 'trajan' / 'params_trajan_T24.npz'


def test_load_official_npz_nests_and_checks(trajan_npz):
  model = model_lib.TrackAutoEncoder(num_output_frames=24)
  params = checkpoint.load_params(trajan_npz, model=model,
                                  example_inputs=ExampleInputs)
  assert params['tracks_to_latents']['layer_0']['cross_att']['dense_key'][
      'kernel'].shape == (256, 8, 64)
  assert params['track_predictor']['kernel'].shape == (1024, 96)
  flat = checkpoint.flatten_params(params)
  assert len(flat) == 252
  assert all(v.dtype == np.float32 for v in flat.values())
  with np.load(trajan_npz, allow_pickle=False) as raw:
    np.testing.assert_array_equal(flat['initializer/state_init'],
                                  raw['initializer/state_init'])


def test_wrong_model_lists_exact_differences(trajan_npz):
  model = model_lib.TrackAutoEncoder(num_output_frames=150)
  with pytest.raises(ValueError) as e:
    checkpoint.load_params(trajan_npz, model=model,
                           example_inputs=ExampleInputs)
  msg = str(e.value)
  assert str(trajan_npz) in msg
  assert '0 missing, 0 unexpected, 2 mis-shaped' in msg
  assert 'mis-shaped: track_predictor/kernel file [1024, 96] model [1024, 600]' in msg
  assert 'mis-shaped: track_predictor/bias file [96] model [600]' in msg


def test_check_params_reports_missing_and_extra():
  expected = {'a/kernel': (2, 3), 'a/bias': (3,), 'b/scale': (4,)}
  params = {'a': {'kernel': np.zeros((2, 3)), 'bias': np.zeros((5,))},
            'c': {'x': np.zeros(1)}}
  with pytest.raises(ValueError) as e:
    checkpoint.check_params(params, expected, 'f.npz')
  lines = str(e.value).splitlines()
  assert lines[0] == ('f.npz: parameters do not match the model (1 missing, '
                      '1 unexpected, 1 mis-shaped).')
  assert lines[1:] == ['  missing: b/scale [4]', '  unexpected: c/x [1]',
                       '  mis-shaped: a/bias file [5] model [3]']
  checkpoint.check_params({'a': {'kernel': np.zeros((2, 3)),
                                 'bias': np.zeros(3)},
                           'b': {'scale': np.ones(4)}}, expected)


def test_save_roundtrip_is_official_layout(tmp_path):
  params = {'enc': {'layer_0': {'kernel': np.arange(6, dtype=np.float32)
                                .reshape(2, 3)}},
            'bias': jnp.full((3,), 0.5)}
  path = tmp_path / 'p.npz'
  checkpoint.save_params_npz(path, {'params': params})
  with np.load(path, allow_pickle=False) as raw:
    assert sorted(raw.files) == ['bias', 'enc/layer_0/kernel']
    assert raw['bias'].dtype == np.float32
  back = checkpoint.load_params(path)
  np.testing.assert_array_equal(back['enc']['layer_0']['kernel'],
                                params['enc']['layer_0']['kernel'])
  np.testing.assert_array_equal(back['bias'], 0.5)


def test_malformed_files_name_the_file(tmp_path):
  not_zip = tmp_path / 'text.npz'
  not_zip.write_text('hello')
  with pytest.raises(ValueError, match=r'text\.npz: not an \.npz'):
    checkpoint.load_params(not_zip)

  good = tmp_path / 'good.npz'
  np.savez(good, **{'a/kernel': np.ones((4, 4), np.float32)})
  truncated = tmp_path / 'cut.npz'
  truncated.write_bytes(good.read_bytes()[:-40])
  with pytest.raises(ValueError, match=r'cut\.npz'):
    checkpoint.load_params(truncated)

  obj = tmp_path / 'obj.npz'
  np.savez(obj, **{'a/kernel': np.asarray([{'x': 1}], dtype=object)})
  with pytest.raises(ValueError, match=r"obj\.npz: array 'a/kernel'"):
    checkpoint.load_params(obj)

  ints = tmp_path / 'ints.npz'
  np.savez(ints, **{'a/kernel': np.ones((2,), np.int32)})
  with pytest.raises(ValueError, match=r"ints\.npz: parameter 'a/kernel' has "
                     'dtype int32'):
    checkpoint.load_params(ints)

  nan = tmp_path / 'nan.npz'
  values = np.ones((2, 3), np.float32)
  values[1, :2] = [np.nan, np.inf]
  np.savez(nan, **{'a/kernel': values, 'a/bias': np.ones(3, np.float32)})
  with pytest.raises(ValueError, match=r"nan\.npz: field 'a/kernel': 1 parameter\(s\) hold "
                     r'NaN or Inf values .*a/kernel \(2 of 6\)'):
    checkpoint.load_params(nan)
  forensic = checkpoint.load_params(nan, allow_nonfinite=True)
  np.testing.assert_array_equal(forensic['a']['kernel'], values)

  empty = tmp_path / 'empty.npz'
  with zipfile.ZipFile(empty, 'w'):
    pass
  with pytest.raises(ValueError, match=r'empty\.npz: archive holds no arrays'):
    checkpoint.load_params(empty)

  clash = tmp_path / 'clash.npz'
  np.savez(clash, **{'a': np.ones(1, np.float32),
                     'a/b': np.ones(1, np.float32)})
  with pytest.raises(ValueError, match=r"clash\.npz: 'a' is both"):
    checkpoint.load_params(clash)

  with pytest.raises(ValueError, match='no such parameter file'):
    checkpoint.load_params(tmp_path / 'missing.npz')


@pytest.mark.parametrize('file,kind,ok', [
    ('params_3dspa_T24.npz', '3dspa', True),
    ('params_3dspa_nofeat_T24.npz', '3dspa_nofeat', True),
    ('params_3dspa_T24.npz', '3dspa_nofeat', False),
])
def test_3dspa_check_infers_feature_inputs(golden, file, kind, ok):
  model = model_lib.build_model(kind, num_output_frames=24)
  path = golden / 'trajan' / file
  if ok:
    params = checkpoint.load_params(path, model=model)
    assert ('dino_projection' in params) == (kind == '3dspa')
  else:
    # use_dino/use_depth off: the file's projections are unexpected.
    with pytest.raises(ValueError, match=r'0 missing, 4 unexpected') as e:
      checkpoint.load_params(path, model=model)
    assert 'unexpected: dino_projection/kernel [768, 384]' in str(e.value)


def test_orbax_train_state_layout(tmp_path):
  params = {'dense': {'kernel': jnp.arange(6.0).reshape(2, 3),
                      'bias': jnp.zeros(3)}}
  state = {'params': params, 'step': jnp.int32(4),
           'opt_state': {'mu': params}}
  manager = ocp.CheckpointManager(tmp_path / 'work' / 'checkpoints',
                                  item_names=('state',))
  for step in (1, 4):
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(jax.tree.map(lambda v: v * step,
                                                 state))))
  manager.wait_until_finished()
  manager.close()
  latest = checkpoint.load_params(tmp_path / 'work')  # workdir -> step 4
  np.testing.assert_array_equal(latest['dense']['kernel'],
                                4 * np.arange(6.0).reshape(2, 3))
  assert latest['dense']['kernel'].dtype == np.float32
  first = checkpoint.load_params(tmp_path / 'work' / 'checkpoints' / '1'
                                 / 'state')
  np.testing.assert_array_equal(first['dense']['kernel'],
                                np.arange(6.0).reshape(2, 3))
  checkpoint.check_params(first, {'dense/kernel': (2, 3), 'dense/bias': (3,)})

  bare = tmp_path / 'bare'
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(bare, params)
  np.testing.assert_array_equal(
      checkpoint.load_params(bare)['dense']['bias'], 0.0)

  (tmp_path / 'nothing').mkdir()
  with pytest.raises(ValueError, match='not an orbax checkpoint'):
    checkpoint.load_params(tmp_path / 'nothing')
