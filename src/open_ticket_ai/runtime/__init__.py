"""The runtime: orchestrator, runners, schedules, events, state, stats, watchdog."""
