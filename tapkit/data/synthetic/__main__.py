"""`python -m tapkit.data.synthetic --help`: renders synthetic clip files (see `cli`)."""


from tapkit import cli as tapkit_cli
from tapkit.data.synthetic import cli

if __name__ == '__main__':
  tapkit_cli.run(cli.main)
