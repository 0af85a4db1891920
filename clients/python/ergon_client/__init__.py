"""A Python client of an Ergon node (see README.md)."""

from .client import Client, ErgonError, JobFailed, Result

__all__ = ["Client", "ErgonError", "JobFailed", "Result"]
