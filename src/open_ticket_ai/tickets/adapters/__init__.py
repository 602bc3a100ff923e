"""Helpdesk adapters, one module each."""
