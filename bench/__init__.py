"""claude-bridge benchmarks: the bridge measured against the Synapse it runs on, in the same run.

``python -m bench run [--postgres] [--quick]`` starts a throwaway Synapse and the bridge (as a
subprocess) on loopback, runs every benchmark, prints a table and writes it as JSON;
``python -m bench compare OLD.json NEW.json`` prints the ratios between two runs. Never part of
the test suite. See ``bench/__main__.py`` and docs/benchmarks.md.
"""
