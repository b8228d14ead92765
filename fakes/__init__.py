"""Fake platform and model servers on 127.0.0.1, shared by tests/ and bench/."""
