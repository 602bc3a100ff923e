"""The sample-ticket generator: deterministic, varied, bilingual, every queue and priority."""

from __future__ import annotations

from collections import Counter

import pytest

from open_ticket_ai.demo import PRIORITIES, QUEUES, sample_tickets
from open_ticket_ai.tickets.models import NewTicket, Priority


def test_the_same_seed_gives_the_same_tickets() -> None:
    assert sample_tickets(300, seed=3) == sample_tickets(300, seed=3)
    assert sample_tickets(50, seed=3) == sample_tickets(300, seed=3)[:50]
    assert sample_tickets(100, seed=3) != sample_tickets(100, seed=4)


def test_tickets_cover_every_queue_priority_and_language() -> None:
    tickets = sample_tickets(400)
    assert len(tickets) == 400
    queues = Counter(t.queue for t in tickets)
    assert set(queues) == set(QUEUES) == {"IT Support", "Billing", "Sales", "HR"}
    assert min(queues.values()) >= 30
    assert set(t.priority for t in tickets) == set(PRIORITIES)
    assert {Priority.LOW, Priority.VERY_HIGH} <= set(PRIORITIES)
    languages = Counter(t.language for t in tickets)
    assert set(languages) == {"en", "de"}
    assert min(languages.values()) >= 150
    assert len({t.text for t in tickets}) >= 390  # nearly all distinct


def test_a_ticket_reads_like_a_ticket() -> None:
    tickets = sample_tickets(200)
    for ticket in tickets:
        assert ticket.subject.strip()
        assert ticket.subject[0].isupper()
        assert len(ticket.body) > 40
        assert "{" not in ticket.text  # every template slot was filled
        assert ticket.text.startswith(ticket.subject)
    german = [t for t in tickets if t.language == "de" and t.queue == "Billing"]
    words = ("Rechnung", "Zahlung", "Gutschrift", "Gebühr", "Lastschrift", "Überweisung")
    about_money = [t for t in german if any(word in t.text for word in words)]
    assert len(about_money) >= 0.8 * len(german)  # a few are too vague to tell


def test_a_sample_ticket_becomes_a_new_ticket() -> None:
    ticket = sample_tickets(1)[0]
    new = ticket.as_new_ticket()
    assert isinstance(new, NewTicket)
    assert (new.subject, new.body, new.queue, new.priority) == (
        ticket.subject,
        ticket.body,
        ticket.queue,
        ticket.priority,
    )
    assert new.requester
    assert new.requester in ticket.body


def test_one_language_only() -> None:
    assert {t.language for t in sample_tickets(50, languages=["de"])} == {"de"}


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="languages must be some of"):
        sample_tickets(5, languages=["fr"])
