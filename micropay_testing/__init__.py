"""Helpers the test suites import: processes, databases, schemas, apps, polling, HTTP, events,
users.

Fixtures stay in the `conftest.py` files; everything a test module imports lives here.
"""
