"""The app layer above the methods: jobs that combine trajan3d, tracks4d and dpov_jax.

`python -m tapkit3d.quickstart` runs each method's demo stage (its `demo.py`) on synthetic data
and writes one report. This package may import every method; the methods and `tapkit` never
import it.
"""
