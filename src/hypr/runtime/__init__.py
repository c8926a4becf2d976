"""How a workload runs: one `Runtime` protocol (base.py), backends in their own modules (sandbox.py, ...)."""
