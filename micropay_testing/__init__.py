"""Helpers the test suites import: processes, databases, apps, polling, HTTP, events, users.

Fixtures stay in the `conftest.py` files; everything a test module imports lives here.
"""
