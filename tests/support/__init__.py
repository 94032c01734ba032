"""Test helpers, one module per job. Fixtures live in tests/conftest.py."""
