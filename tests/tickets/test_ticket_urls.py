"""Each helpdesk adapter says where a person opens a ticket in its web interface (the
console links there); the embedded helpdesk has none."""

from __future__ import annotations

import pytest

from open_ticket_ai.tickets.adapters.rt import RequestTrackerParams, RequestTrackerTicketSystem
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.adapters.zammad import ZammadParams, ZammadTicketSystem
from open_ticket_ai.tickets.adapters.znuny import ZnunyParams, ZnunyTicketSystem


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        (
            RequestTrackerTicketSystem(RequestTrackerParams(url="https://rt.example/", token="t")),
            "https://rt.example/Ticket/Display.html?id=42",
        ),
        (
            ZammadTicketSystem(ZammadParams(url="https://z.example/api/v1", token="t")),
            "https://z.example/#ticket/zoom/42",
        ),
        (
            ZnunyTicketSystem(
                ZnunyParams(
                    url="https://o.example/otrs/nph-genericinterface.pl/Webservice/otai",
                    username="u",
                    password="p",  # type: ignore[arg-type]
                )
            ),
            "https://o.example/otrs/index.pl?Action=AgentTicketZoom;TicketID=42",
        ),
        (SqliteTicketSystem(SqliteParams(path="unused.sqlite")), None),
    ],
    ids=["rt", "zammad", "znuny", "embedded"],
)
def test_ticket_urls(system: object, expected: str | None) -> None:
    assert system.ticket_url("42") == expected  # type: ignore[attr-defined]


def test_a_ticket_id_is_quoted_into_the_url() -> None:
    rt = RequestTrackerTicketSystem(RequestTrackerParams(url="https://rt.example", token="t"))
    assert rt.ticket_url("4 2&x=1") == "https://rt.example/Ticket/Display.html?id=4%202%26x%3D1"
