"""`python -m tapkit.data.synthetic --help`: renders synthetic clip files (see `cli`)."""

import sys

from tapkit.data.synthetic import cli

if __name__ == '__main__':
  cli.main(sys.argv[1:])
