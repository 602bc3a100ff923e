"""Demo data: realistic sample helpdesk tickets, generated deterministically, no downloads."""

from open_ticket_ai.demo.sample_tickets import (
    EXPECTED_QUEUE,
    PRIORITIES,
    QUEUES,
    SampleTicket,
    sample_tickets,
)

__all__ = ["EXPECTED_QUEUE", "PRIORITIES", "QUEUES", "SampleTicket", "sample_tickets"]
