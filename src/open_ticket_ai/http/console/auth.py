"""Who may use the console: password hashes (argon2), roles, CSRF tokens and the limit on
failed logins."""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from open_ticket_ai.core.config.models import ConsoleUser

__all__ = ["ROLES", "LoginLimiter", "Users", "csrf_matches", "hash_password", "new_csrf_token"]

ROLES = ("viewer", "admin")
"""``viewer`` reads every page; ``admin`` also fires, pauses, resumes and corrects."""

_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked against for unknown user names, so that a login takes as long either way.
    Made on the first login, not at import: a hash takes a tenth of a second, and every
    start of the service imports this module."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` for ``console_users`` (``otai console add-user``)."""
    return _HASHER.hash(password)


class Users:
    """The configured console users; :meth:`check` is slow on purpose (argon2): call it in a
    worker thread."""

    def __init__(self, users: dict[str, ConsoleUser]) -> None:
        self._users = dict(users)

    def role(self, name: str) -> str | None:
        user = self._users.get(name)
        return user.role if user is not None else None

    def check(self, name: str, password: str) -> bool:
        """True when ``password`` is the user's; never raises for a bad hash or name."""
        user = self._users.get(name)
        try:
            _HASHER.verify(user.password_hash if user is not None else _dummy_hash(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return user is not None


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: object, given: object) -> bool:
    return (
        isinstance(expected, str)
        and isinstance(given, str)
        and bool(expected)
        and hmac.compare_digest(expected.encode(), given.encode())
    )


@dataclass
class LoginLimiter:
    """At most ``attempts`` failed logins per client address and per user name within
    ``window`` seconds; after that, logins from there (or as that user) are refused until the
    oldest failure leaves the window."""

    attempts: int = 5
    window: float = 300.0
    clock: object = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _now(self) -> float:
        clock = self.clock
        assert callable(clock)
        return float(clock())

    def blocked(self, *keys: str) -> bool:
        now = self._now()
        for key in keys:
            failures = self._failures.get(key)
            if failures is None:
                continue
            while failures and now - failures[0] >= self.window:
                failures.popleft()
            if len(failures) >= self.attempts:
                return True
        return False

    def failed(self, *keys: str) -> None:
        now = self._now()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 10_000:  # addresses that stopped trying: forget them
            for key in [
                k for k, v in self._failures.items() if not v or now - v[-1] >= self.window
            ]:
                del self._failures[key]

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
