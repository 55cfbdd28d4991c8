"""Helpers the test modules import: PostgreSQL servers, runs, store access, child processes.

``tests`` is on ``sys.path`` (``pythonpath`` in pyproject.toml), so this is the ``support``
package to the tests and to the child processes they spawn.
"""
