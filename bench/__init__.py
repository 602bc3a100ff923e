"""Benchmarks that compare open-ticket-ai with a bare-asyncio floor and APScheduler in one run."""
