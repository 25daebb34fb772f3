"""Tests for the run-directory API (tapkit.train.workdir)."""

import json
import re

import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tapkit.train import checkpoint as ckpt_lib
from tapkit.train import launch
from tapkit.train import workdir as workdir_lib

KERNEL = np.arange(6.0, dtype=np.float32).reshape(2, 3)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """A workdir with config.json and engine-layout checkpoints at steps 1 and 4."""
  wd = tmp_path_factory.mktemp('run')
  config = ml_collections.ConfigDict({'model': {'width': 8, 'kind': 'toy'}, 'seed': 3,
                                      'sizes': (2, 4)})
  launch.save_config(config, wd)
  manager = ocp.CheckpointManager(wd / 'checkpoints', item_names=('state',))
  for step in (1, 4):
    state = {'params': {'dense': {'kernel': KERNEL * step}}, 'step': np.int32(step)}
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
  manager.wait_until_finished()
  manager.close()
  return wd


def test_load_config_reads_config_json(run):
  config = workdir_lib.load_config(run, required=('model',), method='toy')
  assert isinstance(config, ml_collections.ConfigDict)
  assert config.model.width == 8 and config.model.kind == 'toy' and config.seed == 3
  assert list(config.sizes) == [2, 4]  # JSON has no tuples


def test_load_config_errors(tmp_path, run):
  path = tmp_path / 'config.json'
  with pytest.raises(ValueError, match=re.escape(str(path)) + ': missing'):
    workdir_lib.load_config(tmp_path)
  with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, for older callers
    workdir_lib.load_config(tmp_path)
  path.write_text('{"model": ')
  with pytest.raises(ValueError, match='not valid JSON'):
    workdir_lib.load_config(tmp_path)
  path.write_text('[1, 2]')
  with pytest.raises(ValueError, match='holds a list'):
    workdir_lib.load_config(tmp_path)
  with pytest.raises(ValueError, match=r'field backbone is missing \(not a dpov_jax run\?\)'):
    workdir_lib.load_config(run, required=('model', 'backbone'), method='dpov_jax')


def test_find_workdir_layouts(run, tmp_path):
  ckpts = run / 'checkpoints'
  assert workdir_lib.find_workdir(run) == (run, None)
  assert workdir_lib.find_workdir(ckpts) == (run, None)
  assert workdir_lib.find_workdir(ckpts / '4') == (run, 4)
  assert workdir_lib.find_workdir(ckpts / '1' / 'state') == (run, 1)
  assert workdir_lib.find_workdir(run / 'export' / 'params.npz') == (run, None)
  with pytest.raises(workdir_lib.WorkdirError, match='not in a training run directory'):
    workdir_lib.find_workdir(tmp_path)


def test_resolve_checkpoint_layouts(run, tmp_path):
  ckpts = run / 'checkpoints'
  assert workdir_lib.checkpoint_steps(ckpts) == [1, 4]
  assert workdir_lib.resolve_checkpoint(run) == (4, ckpts / '4' / 'state')
  assert workdir_lib.resolve_checkpoint(run, step=1) == (1, ckpts / '1' / 'state')
  assert workdir_lib.resolve_checkpoint(ckpts) == (4, ckpts / '4' / 'state')
  assert workdir_lib.resolve_checkpoint(ckpts / '1') == (1, ckpts / '1' / 'state')
  assert workdir_lib.resolve_checkpoint(ckpts / '1' / 'state') == (1, ckpts / '1' / 'state')
  bare = tmp_path / 'bare'
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(bare, {'kernel': KERNEL})
  assert workdir_lib.resolve_checkpoint(bare) == (None, bare)
  with pytest.raises(workdir_lib.WorkdirError, match='No checkpoint for step 3 at'):
    workdir_lib.resolve_checkpoint(run, step=3)
  (tmp_path / 'empty' / 'checkpoints').mkdir(parents=True)
  with pytest.raises(workdir_lib.WorkdirError, match='No checkpoint in'):
    workdir_lib.resolve_checkpoint(tmp_path / 'empty')
  (tmp_path / 'nothing').mkdir()
  with pytest.raises(workdir_lib.WorkdirError, match='not an orbax checkpoint'):
    workdir_lib.resolve_checkpoint(tmp_path / 'nothing')
  with pytest.raises(workdir_lib.WorkdirError, match='no such checkpoint directory'):
    workdir_lib.resolve_checkpoint(tmp_path / 'missing')


def test_load_state_reads_numpy(run, tmp_path):
  step, state = workdir_lib.load_state(run)
  assert step == 4
  np.testing.assert_array_equal(state['params']['dense']['kernel'], 4 * KERNEL)
  assert isinstance(state['params']['dense']['kernel'], np.ndarray)
  assert int(state['step']) == 4
  step, state = workdir_lib.load_state(str(run), 1)
  assert step == 1
  np.testing.assert_array_equal(state['params']['dense']['kernel'], KERNEL)
  with pytest.raises(FileNotFoundError, match='No checkpoint for step 2 at'):
    workdir_lib.load_state(run, 2)
  with pytest.raises(FileNotFoundError, match='No checkpoint in'):
    workdir_lib.load_state(tmp_path)
  assert ckpt_lib.load_state_numpy is workdir_lib.load_state


def test_config_json_written_by_launch_round_trips(tmp_path):
  config = ml_collections.ConfigDict({'optimizer': {'lr': 3e-4, 'groups': ()}, 'name': 'x'})
  launch.save_config(config, tmp_path)
  loaded = workdir_lib.load_config(tmp_path)
  assert loaded.optimizer.lr == 3e-4 and loaded.name == 'x'
  assert json.loads((tmp_path / 'config.json').read_text()) == loaded.to_dict()
