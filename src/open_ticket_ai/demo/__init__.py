"""Demo data: realistic sample helpdesk tickets, generated deterministically, no downloads."""

from open_ticket_ai.demo.sample_tickets import PRIORITIES, QUEUES, SampleTicket, sample_tickets

__all__ = ["PRIORITIES", "QUEUES", "SampleTicket", "sample_tickets"]
