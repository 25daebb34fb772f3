"""The TensorBoard writer never imports TensorFlow, even where TensorFlow is installed."""

import json
import pathlib
import subprocess
import sys

from tapkit.viz import plots

REPO = pathlib.Path(__file__).resolve().parents[3]

_SCRIPT = '''
import json, sys
from tapkit.train import writers
w = writers.TensorBoardWriter(sys.argv[1])
w.write_scalars(1, {"train/loss": 0.5})
w.write_scalars(2, {"train/loss": 0.25})
w.close()
print(json.dumps({"tensorflow": "tensorflow" in sys.modules}))
'''


def test_tensorboard_writer_runs_without_importing_tensorflow(tmp_path):
  # A fresh interpreter: nothing else has imported TensorFlow or resolved tensorboard's `tf`.
  proc = subprocess.run([sys.executable, '-c', _SCRIPT, str(tmp_path)], cwd=REPO,
                        capture_output=True, text=True, timeout=300, check=False,
                        env={'PYTHONPATH': str(REPO), 'JAX_PLATFORMS': 'cpu',
                             'PATH': '/usr/bin:/bin'})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1]) == {'tensorflow': False}
  steps, values = plots.load_tensorboard_scalars(tmp_path)['train/loss']
  assert steps.tolist() == [1, 2] and values.tolist() == [0.5, 0.25]
