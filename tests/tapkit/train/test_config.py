"""Strict configs: unknown keys raise with their full dotted name."""

import dataclasses

import ml_collections
import pytest

from tapkit.train import config as config_lib


def _reference():
  return ml_collections.ConfigDict({
      'seed': 0,
      'loss': {'teacher_reference_grad': True, 'nmb_ref': 5},
      'optimizer': {'lr': 1e-3, 'groups': ()},
      'data': {'sources': {'ytvos': {'frames_root': '', 'tracks_root': ''}}},
      'evals': {},
  })


def test_known_keys_pass_and_leaves_are_not_descended():
  config = _reference()
  config.optimizer.groups = ((r'^backbone/', 0.0),)  # a tuple value, not a section
  config_lib.check_config(config, _reference(), any_name=('data.sources',))


def test_misspelt_nested_key_names_the_full_key_and_the_closest_one():
  config = _reference()
  config.loss.teacher_refrence_grad = False
  with pytest.raises(ValueError) as e:
    config_lib.check_config(config, _reference())
  assert str(e.value) == ("config key 'loss.teacher_refrence_grad' is not known; did you mean "
                          "'loss.teacher_reference_grad'?")


def test_unknown_top_level_key_without_a_close_match_lists_the_known_ones():
  config = _reference()
  config.zzz = 1
  with pytest.raises(ValueError, match=r"config key 'zzz' is not known; known keys here: "
                                       r"\['data', 'evals', 'loss', 'optimizer', 'seed'\]"):
    config_lib.check_config(config, _reference())


def test_user_named_entries_are_checked_against_the_first_entry():
  config = _reference()
  config.data.sources.mine = ml_collections.ConfigDict({'frames_root': 'a', 'tracks_root': 'b'})
  config_lib.check_config(config, _reference(), any_name=('data.sources',))
  config.data.sources.mine.frame_root = 'a'
  with pytest.raises(ValueError, match=r"'data.sources.mine.frame_root' is not known; did you "
                                       r"mean 'data.sources.mine.frames_root'\?"):
    config_lib.check_config(config, _reference(), any_name=('data.sources',))


def test_evals_entries_are_left_to_the_evaluator_builder():
  config = _reference()
  config.evals.held_out = ml_collections.ConfigDict({'type': 'x.y', 'every_steps': 3, 'k': 1})
  config_lib.check_config(config, _reference())


@dataclasses.dataclass(frozen=True)
class _Loss:
  nmb_ref: int = 5
  crop_ratio: float = 0.5


def test_from_section_keeps_dataclass_defaults_and_rejects_other_keys():
  got = config_lib.from_section(_Loss, ml_collections.ConfigDict({'nmb_ref': 3}), 'loss')
  assert got == _Loss(nmb_ref=3, crop_ratio=0.5)
  with pytest.raises(ValueError, match=r"config key 'loss.crop_ration' is not known; did you "
                                       r"mean 'loss.crop_ratio'\?"):
    config_lib.from_section(_Loss, {'crop_ration': 1.0}, 'loss')


@pytest.mark.parametrize('config_file,presets', [
    ('configs/trajan.py', ('smoke', 'default', 'paper_weights')),
    ('configs/spa3d.py', ('smoke', 'default', 'paper_weights')),
    ('configs/tracks4d.py', ('smoke', 'default')),
    ('configs/dpov.py', ('smoke', 'default')),
    ('configs/probe3d.py', ('smoke', 'default')),
    ('configs/toy.py', ('smoke', 'default')),
])
def test_every_preset_only_uses_keys_of_its_base_preset(config_file, presets):
  base = config_lib.method_reference(config_file)
  for preset in presets:
    config_lib.check_config(config_lib.load_config(f'{config_file}:{preset}'), base)


@pytest.mark.parametrize('config_file', ['configs/trajan.py', 'configs/spa3d.py',
                                         'configs/tracks4d.py', 'configs/dpov.py'])
def test_same_concept_same_key_across_methods(config_file):
  config = config_lib.load_config(config_file)
  assert 'train_dir' in config.data
  assert {'num_train', 'num_eval', 'seed'} <= set(config.data.synthetic.keys())
  assert 'evals' in config
