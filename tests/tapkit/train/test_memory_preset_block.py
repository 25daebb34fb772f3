"""`python -m tapkit.train.memory --update_preset_comment`: the generated preset block.

The tool writes the compiled step's memory and FLOPs into the config file between
`# BEGIN memory <preset>` and `# END memory <preset>`; the block parses back to the
report's numbers, rerunning it changes nothing, and the committed presets of the
three methods carry one.
"""

import pathlib
import shutil

import pytest

from tapkit.train import memory

REPO = pathlib.Path(__file__).resolve().parents[3]


def test_block_is_written_parses_and_the_rewrite_is_idempotent(tmp_path, capsys):
  path = tmp_path / 'toy.py'
  shutil.copy(REPO / 'configs' / 'toy.py', path)
  original = path.read_text()
  argv = ['--config', f'{path}:smoke', '--config.batch_size=8', '--update_preset_comment',
          '--json']
  memory.main(argv)
  first = path.read_text()
  assert first != original
  # Only the block was added, directly above get_config.
  block_start = first.index('# BEGIN memory smoke')
  block_end = first.index('# END memory smoke\n') + len('# END memory smoke\n')
  assert first[:block_start] + first[block_end:] == original
  assert first[block_end:].startswith('def get_config(')
  out = capsys.readouterr().out
  report = memory.json.loads(out.strip().splitlines()[-1])
  parsed = memory.parse_block(first, 'smoke')
  assert parsed['per_device_batch'] == 8 and parsed['devices'] == 1
  assert parsed['global_batch'] == 16  # the toy smoke preset's own batch size
  assert parsed['compute_dtype'] == 'float32' and parsed['remat'] == 'none'
  assert parsed['num_params'] == report['num_params'] == 16 * 64 + 64 + 64 * 64 + 64 + 64 * 4 + 4
  assert parsed['flops_per_example'] == pytest.approx(report['flops_per_example'], rel=1e-3)
  for key, _ in memory.BLOCK_FIELDS:
    assert parsed[key] == pytest.approx(report[key] / 2**30, abs=0.006)
  assert parsed['command'] == 'python -m tapkit.train.memory ' + ' '.join(argv)
  # The generated config still loads, and a second run rewrites the same bytes.
  memory.main(argv)
  assert path.read_text() == first
  assert 'unchanged' in capsys.readouterr().out
  assert memory.parse_block(first, 'default') is None


def test_changed_numbers_replace_the_block():
  text = 'X = 1\n\n\ndef get_config(arg=None):\n  return arg\n'
  r = {'batch_size': 2, 'devices': 1, 'compute_dtype': 'bfloat16', 'flops_per_example': 1.5e9,
       'num_params': 1234, 'params_bytes': 2**30, 'opt_state_bytes': 2**31, 'ema_bytes': 0,
       'batch_bytes': 2**20, 'temp_bytes': 3 * 2**30, 'peak_bytes': 6 * 2**30}
  block = memory.format_block(r, 'default', 'python -m tapkit.train.memory x', 64, 'block')
  parsed = memory.parse_block(block, 'default')
  assert parsed == {'command': 'python -m tapkit.train.memory x', 'per_device_batch': 2,
                    'global_batch': 64, 'compute_dtype': 'bfloat16', 'remat': 'block',
                    'devices': 1, 'flops_per_example': 1.5e9, 'num_params': 1234,
                    'params_bytes': 1.0, 'opt_state_bytes': 2.0, 'ema_bytes': 0.0,
                    'batch_bytes': 0.0, 'temp_bytes': 3.0, 'peak_bytes': 6.0}
  with pytest.raises(ValueError, match='malformed'):
    memory.parse_block(block.replace('FLOPs per example', 'FLOPs'), 'default')


@pytest.mark.parametrize('name', ['spa3d', 'tracks4d', 'dpov'])
def test_default_presets_carry_a_generated_block(name):
  parsed = memory.parse_block((REPO / 'configs' / f'{name}.py').read_text(), 'default')
  assert parsed is not None, f'configs/{name}.py has no "# BEGIN memory default" block'
  assert parsed['command'].startswith(f'python -m tapkit.train.memory --config configs/{name}.py')
  assert parsed['peak_bytes'] > 0 and parsed['flops_per_example'] > 0
