"""Tickets: the unified model, the TicketSystem interface, ticket pipes and adapters."""
