"""The intake: the Service every ingress calls (plan via the core, policy, persist)."""
