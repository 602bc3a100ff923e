"""The HTTP listener: webhooks, manual fires, health. It steers the runtime through
:class:`open_ticket_ai.runtime.control.Control` only."""

from open_ticket_ai.http.listener import Listener, start_listener

__all__ = ["Listener", "start_listener"]
