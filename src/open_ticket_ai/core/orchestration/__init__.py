"""Runners, triggers and the orchestrator."""
