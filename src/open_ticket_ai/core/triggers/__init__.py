"""Trigger base classes and the timing rules of time triggers."""
