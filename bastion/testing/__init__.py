"""Real-part helpers shared by the test suite, the demo and the benchmarks (sshd, ssh-keygen)."""
