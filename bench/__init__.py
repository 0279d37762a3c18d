"""`make bench`: the pipeline measured against the floor and against peers.

Not part of `make test`. See docs/benchmarks.md for what is measured and why,
and `python -m bench --help` for the options.
"""
