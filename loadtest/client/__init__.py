"""The protocol clients (2025-11-25 and 2026-07-28, over `requests`) and the capabilities they measure.

No Locust and no gevent here (`lint-imports` holds that): the tests and the benchmark use them as they are.
"""
