"""Desired state -> kernel. Each module converges one kind of kernel object and is safe to run any number of times."""
