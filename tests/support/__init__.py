"""Test harness shared by every test module: real sshd, real ssh, real certificates."""
