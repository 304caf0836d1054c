"""The side-by-side benchmark harness: direct OpenSSH, an OpenSSH jump host, and the bastion.

``bench/run.py`` is the entry point; these modules are its parts: ``procs`` (CPU and memory
from /proc), ``env`` (the loopback set-up and the three paths), ``clients`` (asyncssh clients
for the three paths), ``measure`` (one function per figure), ``micro`` (the gate's and the
masker's own benchmarks) and ``report`` (medians, ratios, goals, Markdown and JSON).
"""
