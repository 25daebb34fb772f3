r"""Trains the engine's toy task (`tapkit.train.toy_task`): the smallest complete method.

    python -m tapkit.train.toy --config configs/toy.py:smoke --workdir /tmp/toy

Re-running the same command resumes from the latest checkpoint in --workdir.
"""

from tapkit.train import launch

if __name__ == '__main__':
  launch.run('tapkit.train.toy_task')  # imported once the flags are parsed
