"""ZnunyTicketSystem against a fake Znuny web service on 127.0.0.1 (tests/tickets/fake_znuny)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from tests.tickets.behaviour import TicketSystemBehaviour
from tests.tickets.fake_znuny import FakeZnuny

from open_ticket_ai import build, parse_config
from open_ticket_ai.errors import TicketNotFoundError, TicketSystemError
from open_ticket_ai.tickets.adapters.znuny import (
    OtoboZnunyParams,
    OTOBOZnunyTicketSystemService,
    ZnunyParams,
    ZnunyTicketSystem,
    priority_of,
)
from open_ticket_ai.tickets.models import NewTicket, Note, Priority, TicketChanges, TicketSearch
from open_ticket_ai.tickets.system import TicketSystem

PASSWORD = "s3cret"
CUSTOM_ROUTES: dict[str, tuple[str, str]] = {
    "SessionCreate": ("POST", "/Session"),
    "TicketSearch": ("POST", "/TicketSearch"),
    "TicketGet": ("POST", "/TicketGet"),
    "TicketCreate": ("POST", "/TicketCreate"),
    "TicketUpdate": ("POST", "/TicketUpdate/:TicketID"),
}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


def params(fake: FakeZnuny, **extra: Any) -> ZnunyParams:
    values: dict[str, Any] = {
        "url": fake.url,
        "username": "otai",
        "password": PASSWORD,
        "default_customer_user": "customer@example.com",
        "retry_backoff": 0.01,
        **extra,
    }
    return ZnunyParams.model_validate(values)


@asynccontextmanager
async def opened(fake: FakeZnuny, **extra: Any) -> AsyncIterator[ZnunyTicketSystem]:
    system = ZnunyTicketSystem(params(fake, **extra), id="znuny")
    await system.open()
    try:
        yield system
    finally:
        await system.close()


@pytest.fixture
def fake() -> Iterator[FakeZnuny]:
    with FakeZnuny() as running:
        yield running


class TestZnunyTicketSystem(TicketSystemBehaviour):
    """The sample web service, by session."""

    @pytest.fixture
    async def system(self) -> AsyncIterator[TicketSystem[Any]]:
        with FakeZnuny() as fake:
            async with opened(fake) as system:
                yield system


class TestZnunyWithPasswordsAndCustomRoutes(TicketSystemBehaviour):
    """A web service routed its own way (all POST, TicketGet without :TicketID), with
    UserLogin and Password in every call."""

    @pytest.fixture
    async def system(self) -> AsyncIterator[TicketSystem[Any]]:
        with FakeZnuny(routes=CUSTOM_ROUTES) as fake:
            async with opened(fake, auth="password", routes=CUSTOM_ROUTES) as system:
                yield system


UPSTREAM_ROUTES: dict[str, tuple[str, str]] = {
    "TicketCreate": ("POST", "/ticket-create"),
    "TicketSearch": ("POST", "/ticket-search"),
    "TicketGet": ("POST", "/ticket-get"),
    "TicketUpdate": ("POST", "/ticket-update"),
}
"""Open Ticket AI's ``OpenTicketAI`` web service: its own routes, no session."""


class TestOtoboZnunyWithOpenTicketAIsParams(TicketSystemBehaviour):
    """Open Ticket AI's ``otobo-znuny:OTOBOZnunyTicketSystemService`` params (base_url,
    webservice_name, operation_urls) against a fake of the web service it ships."""

    @pytest.fixture
    async def system(self) -> AsyncIterator[TicketSystem[Any]]:
        with FakeZnuny(routes=UPSTREAM_ROUTES) as fake:
            base_url = fake.url.split("/Webservice/")[0]
            params = OtoboZnunyParams.model_validate(
                {
                    "base_url": base_url,
                    "username": "otai",
                    "password": PASSWORD,
                    "webservice_name": "OpenTicketAI",
                    "default_customer_user": "customer@example.com",
                    "retry_backoff": 0.01,
                }
            )
            system = OTOBOZnunyTicketSystemService(params, id="otobo_znuny")
            await system.open()
            try:
                yield system
            finally:
                await system.close()
            assert "SessionCreate" not in fake.operations()  # that web service has none
            assert all(seen.path.startswith("/ticket-") for seen in fake.seen)


# -- the wire -------------------------------------------------------------------------------


async def test_reads_go_by_get_with_data_in_the_query_string(fake: FakeZnuny) -> None:
    async with opened(fake) as system:
        ticket = await system.create(NewTicket(subject="Printer", body="jammed", queue="Raw"))
        await system.search(TicketSearch(queue="Raw", state="new"))
    search = next(seen for seen in fake.seen if seen.operation == "TicketSearch")
    assert (search.method, search.path) == ("GET", "/Ticket")
    assert search.data["Queues"] == "Raw"  # one value: a string, as Znuny reads it
    assert search.data["SortBy"] == ["Changed", "TicketNumber"]
    assert search.data["SessionID"]
    get = next(seen for seen in fake.seen if seen.operation == "TicketGet")
    assert (get.method, get.path) == ("GET", f"/Ticket/{ticket.id}")
    assert get.data["DynamicFields"] == "1"


async def test_a_note_is_an_internal_article_in_ticket_update(fake: FakeZnuny) -> None:
    async with opened(fake) as system:
        ticket = await system.create(NewTicket(subject="Invoice", body="twice", queue="Billing"))
        note = await system.add_note(ticket.id, Note(body="classified as billing"))
        assert [n.id for n in await system.notes(ticket.id)] == [note.id]
        assert (await system.get(ticket.id)).body == "twice"  # the first article, not the note
    update = next(seen for seen in fake.seen if seen.operation == "TicketUpdate")
    assert (update.method, update.path) == ("PATCH", f"/Ticket/{ticket.id}")
    article = update.data["Article"]
    assert article["IsVisibleForCustomer"] == 0
    assert article["CommunicationChannel"] == "Internal"
    assert article["Body"] == "classified as billing"


async def test_custom_routes_are_used() -> None:
    with FakeZnuny(routes=CUSTOM_ROUTES) as custom:
        async with opened(custom, routes=CUSTOM_ROUTES, auth="password") as system:
            ticket = await system.create(NewTicket(subject="Routed", queue="Raw"))
            await system.update(ticket.id, TicketChanges(state="open"))
            await system.search(TicketSearch())
    paths = {(seen.method, seen.path) for seen in custom.seen}
    assert paths == {
        ("POST", "/TicketCreate"),
        ("POST", "/TicketGet"),
        ("POST", f"/TicketUpdate/{ticket.id}"),
        ("POST", "/TicketSearch"),
    }
    get = next(seen for seen in custom.seen if seen.operation == "TicketGet")
    assert get.data["TicketID"] == ticket.id  # no :TicketID in the route: sent as data


async def test_routes_the_web_service_lacks_fail_clearly(fake: FakeZnuny) -> None:
    async with opened(fake, routes={"TicketSearch": ("POST", "/Search")}, retries=0) as system:
        with pytest.raises(TicketSystemError, match=r"answered 500.*determine Operation"):
            await system.search(TicketSearch())


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"routes": {"Search": ["GET", "/Search"]}}, "TicketSearch"),
        ({"routes": {"TicketGet": ["FETCH", "/Ticket"]}}, "PATCH"),
        ({"time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"priority_map": {"urgent": "5 very high"}}, "very high"),
    ],
)
def test_params_are_checked(extra: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        ZnunyParams.model_validate({"url": "http://x", "username": "u", "password": "p", **extra})


# -- errors ---------------------------------------------------------------------------------


async def test_an_error_object_in_a_200_answer_is_a_ticket_system_error(fake: FakeZnuny) -> None:
    async with opened(fake) as system:
        ticket = await system.create(NewTicket(subject="Moved", queue="Raw"))
        with pytest.raises(TicketSystemError) as caught:
            await system.update(ticket.id, TicketChanges(queue="Nowhere"))
    assert not isinstance(caught.value, TicketNotFoundError)
    assert caught.value.status == 200
    message = str(caught.value)
    assert "znuny 'znuny': TicketUpdate failed: TicketUpdate.InvalidParameter" in message
    assert "Ticket->QueueID or Ticket->Queue parameter is invalid!" in message


async def test_access_denied_is_not_found(fake: FakeZnuny) -> None:
    async with opened(fake) as system:
        with pytest.raises(TicketNotFoundError, match=r"TicketGet\.AccessDenied"):
            await system.get("77")
        with pytest.raises(TicketNotFoundError, match="ids are numbers"):
            await system.get("../Session")
    assert [seen.path for seen in fake.seen] == ["/Session", "/Ticket/77"]


async def test_an_unknown_dynamic_field_is_named(fake: FakeZnuny) -> None:
    async with opened(fake) as system:
        ticket = await system.create(NewTicket(subject="Fields", queue="Raw"))
        with pytest.raises(TicketSystemError, match="DynamicField->Name parameter is invalid"):
            await system.update(ticket.id, TicketChanges(custom_fields={"nope": 1}))


async def test_wrong_credentials_say_so_without_the_password(fake: FakeZnuny) -> None:
    fake.users["otai"] = "changed"
    for auth in ("password", "session"):
        async with opened(fake, auth=auth) as system:
            with pytest.raises(TicketSystemError, match="AuthFail") as caught:
                await system.search(TicketSearch())
        assert "check username 'otai' and its password" in str(caught.value)
        assert PASSWORD not in str(caught.value)


async def test_the_password_goes_only_into_the_body_of_session_create(fake: FakeZnuny) -> None:
    async with opened(fake) as system:
        ticket = await system.create(NewTicket(subject="Session", queue="Raw"))
        await system.add_note(ticket.id, Note(body="seen"))
        await system.notes(ticket.id)
    [create] = [seen for seen in fake.seen if "Password" in seen.data]
    assert (create.method, create.operation) == ("POST", "SessionCreate")
    assert len(fake.seen) > 1


async def test_a_lost_connection_names_no_credentials() -> None:
    with FakeZnuny() as fake:
        url = fake.url
    system = ZnunyTicketSystem(params(fake, url=url, auth="password", retries=0))
    try:
        with pytest.raises(TicketSystemError, match="failed after 1 attempts") as caught:
            await system.search(TicketSearch())
    finally:
        await system.close()
    assert PASSWORD not in str(caught.value)


async def test_an_expired_session_is_renewed_once(fake: FakeZnuny) -> None:
    async with opened(fake) as system:
        ticket = await system.create(NewTicket(subject="Session", queue="Raw"))
        fake.sessions.clear()  # Znuny forgot it (expired, or restarted)
        assert (await system.get(ticket.id)).subject == "Session"
    assert fake.operations().count("SessionCreate") == 2
    assert all(
        "Password" not in seen.data for seen in fake.seen if seen.operation != "SessionCreate"
    )


async def test_5xx_answers_are_retried_until_one_succeeds(fake: FakeZnuny) -> None:
    async with opened(fake, retries=3) as system:
        ticket = await system.create(NewTicket(subject="Flaky", queue="Raw"))
        fake.fail_next(2)
        assert (await system.get(ticket.id)).subject == "Flaky"
        fake.fail_next(4)
        with pytest.raises(TicketSystemError, match="answered 503 after 4 attempts"):
            await system.get(ticket.id)


async def test_a_ticket_needs_a_customer_user(fake: FakeZnuny) -> None:
    async with opened(fake, default_customer_user=None) as system:
        with pytest.raises(TicketSystemError, match="default_customer_user"):
            await system.create(NewTicket(subject="Anonymous", queue="Raw"))
        created = await system.create(NewTicket(subject="Known", queue="Raw", requester="a@b.c"))
        assert created.requester == "a@b.c"


def test_credentials_stay_out_of_descriptions(fake: FakeZnuny) -> None:
    system = ZnunyTicketSystem(params(fake), id="znuny")
    assert PASSWORD not in repr(system.params)
    assert PASSWORD not in str(system.describe())


# -- priorities, paging, times --------------------------------------------------------------


async def test_priorities_map_both_ways() -> None:
    names = ("low", "normal", "high", "urgent")
    mapping = {"very low": "low", "low": "low", "normal": "normal", "high": "high"}
    with FakeZnuny(priorities=names) as fake:
        async with opened(fake, priority_map={**mapping, 5: "urgent"}) as system:
            for level, stored, read in [
                (Priority.VERY_LOW, "low", Priority.LOW),
                (Priority.NORMAL, "normal", Priority.NORMAL),
                (Priority.VERY_HIGH, "urgent", Priority.VERY_HIGH),
            ]:
                ticket = await system.create(NewTicket(subject="p", queue="Raw", priority=level))
                assert ticket.priority == read
                create = [seen for seen in fake.seen if seen.operation == "TicketCreate"][-1]
                assert create.data["Ticket"]["Priority"] == stored


def test_priority_names_read_back_as_the_nearest_level() -> None:
    three = {
        Priority.VERY_LOW: "1 low",
        Priority.LOW: "1 low",
        Priority.NORMAL: "2 normal",
        Priority.HIGH: "3 high",
        Priority.VERY_HIGH: "3 high",
    }
    assert priority_of("1 low", three) == Priority.LOW
    assert priority_of("3 high", three) == Priority.HIGH
    assert priority_of("4 very high", three) == Priority.VERY_HIGH  # unmapped: by its words
    assert priority_of("P1", {Priority.VERY_HIGH: "P1", Priority.HIGH: "P1"}) == Priority.HIGH
    assert priority_of("whatever", three) is None


async def test_paging_asks_for_offset_plus_limit_and_slices(fake: FakeZnuny) -> None:
    async with opened(fake) as system:
        for i in range(7):
            await system.create(NewTicket(subject=f"t{i}", queue="Incoming"))
        everything = await system.search(TicketSearch(queue="Incoming", limit=100))
        window = await system.search(TicketSearch(queue="Incoming", offset=3, limit=2))
        beyond = await system.search(TicketSearch(queue="Incoming", offset=7, limit=2))
    assert [t.id for t in window] == [t.id for t in everything[3:5]]
    assert beyond == []
    limits = [seen.data["Limit"] for seen in fake.seen if seen.operation == "TicketSearch"]
    assert limits == ["100", "5", "9"]


async def test_a_long_page_is_fetched_in_chunks_of_ids(fake: FakeZnuny) -> None:
    async with opened(fake) as system:
        created = [await system.create(NewTicket(subject=f"t{i}", queue="Raw")) for i in range(60)]
        found = await system.search(TicketSearch(queue="Raw", limit=100))
    assert [t.id for t in found] == [t.id for t in created]
    gets = [seen.data["TicketID"] for seen in fake.seen if seen.operation == "TicketGet"]
    assert [len(ids.split(",")) for ids in gets[-2:]] == [50, 10]


async def test_times_are_read_and_sent_in_the_system_time_zone(fake: FakeZnuny) -> None:
    async with opened(fake, time_zone="Europe/Berlin") as system:
        ticket = await system.create(NewTicket(subject="Zoned", queue="Raw"))
        since = datetime(2024, 1, 15, 12, 0, 30, 999_000, tzinfo=UTC)
        await system.search(TicketSearch(updated_since=since))
    assert ticket.created is not None
    assert str(ticket.created.tzinfo) == "Europe/Berlin"
    search = next(seen for seen in fake.seen if seen.operation == "TicketSearch")
    assert search.data["TicketLastChangeTimeNewerDate"] == "2024-01-15 13:00:30"


def test_a_config_builds_it_with_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTAI_ZNUNY_PASSWORD", "from-env")
    config = parse_config(
        """
open_ticket_ai:
  services:
    - id: helpdesk
      use: "open_ticket_ai.tickets.adapters.znuny:ZnunyTicketSystem"
      params:
        url: "https://znuny.example/otrs/nph-genericinterface.pl/Webservice/OTAI"
        username: otai
        password: "{{ env.OTAI_ZNUNY_PASSWORD }}"
        routes: {TicketSearch: [POST, /TicketSearch]}
        priority_map: {very high: "5 sehr hoch"}
  orchestrator:
    runners: []
"""
    )
    system = build(config).services["helpdesk"]
    assert isinstance(system, ZnunyTicketSystem)
    assert system.params.password.get_secret_value() == "from-env"
    assert system.routes["TicketSearch"] == ("POST", "/TicketSearch")
    assert system.routes["TicketGet"] == ("GET", "/Ticket/:TicketID")
    assert system.priorities[Priority.VERY_HIGH] == "5 sehr hoch"
    assert system.priorities[Priority.HIGH] == "4 high"
