"""Reliability runs: the real bastion as a process under load (``load.py``), on loopback only.

``python -m bench.reliability.load --agents 200`` is the full run; ``scripts/reliability.sh``
runs it together with the fault tests and prints one summary.
"""
