"""SSH-facing code: agent-side server, certificate checks, upstream connections to targets."""
