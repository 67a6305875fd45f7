"""Dialog profiles: named sets of dialogs, with or without a value.

This module owns :class:`Profile` and :class:`ProfileTable`: membership
(``set_dlg_profile``, ``unset_dlg_profile``, ``is_in_profile``), sizes
(``get_profile_size``), listing (``dlg.profile_list``) and remote items
(``dlg_remote_profile``: members counted here that another instance
manages, each with a uid and an expiry). Sizes are kept as counters, so
reading one is O(1) however many dialogs there are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs

from sipcore import LocalProtocolError, TimerHandle, TimerQueue

if TYPE_CHECKING:
    from ._dialog import Dialog

__all__ = ["Profile", "ProfileLink", "ProfileTable", "RemoteItem"]


@attrs.frozen
class ProfileLink:
    """One membership of a dialog in a profile (Kamailio: a profile linker)."""

    profile: str
    value: str | None


@attrs.define(eq=False)
class RemoteItem:
    """A member another instance manages (``dlg_remote_profile``)."""

    value: str | None
    uid: str
    expires: float
    _timer: TimerHandle | None = None


class Profile:
    """One profile table (Kamailio: ``profiles_with_value`` or ``profiles_no_value``).

    As in Kamailio, adding the same dialog twice makes two members.
    """

    __slots__ = ("_counts", "_members", "_remote", "_total", "has_value", "name")

    def __init__(self, name: str, has_value: bool) -> None:
        self.name = name
        self.has_value = has_value
        # value -> dialog -> number of links
        self._members: dict[str | None, dict[Dialog, int]] = {}
        self._counts: dict[str | None, int] = {}
        self._total = 0
        self._remote: dict[str, RemoteItem] = {}

    def _key(self, value: str | None) -> str | None:
        # A value given to a profile without values is silently dropped (Kamailio).
        return value if self.has_value else None

    def add(self, dialog: Dialog, value: str | None = None) -> ProfileLink:
        key = self._key(value)
        if self.has_value and key is None:
            raise LocalProtocolError(f"profile {self.name} needs a value")
        members = self._members.setdefault(key, {})
        members[dialog] = members.get(dialog, 0) + 1
        self._counts[key] = self._counts.get(key, 0) + 1
        self._total += 1
        return ProfileLink(self.name, key)

    def remove(self, dialog: Dialog, value: str | None = None) -> bool:
        """Kamailio: ``unset_dlg_profile``: remove one link of ``dialog``
        (the one with ``value`` when given and this profile has values,
        else the first). True when a link went."""
        key = self._key(value)
        if value is not None or not self.has_value:
            candidates = [key]
        else:
            candidates = [k for k, m in self._members.items() if dialog in m][:1]
        for candidate in candidates:
            members = self._members.get(candidate)
            if not members or dialog not in members:
                continue
            if members[dialog] > 1:
                members[dialog] -= 1
            else:
                del members[dialog]
                if not members:
                    del self._members[candidate]
            self._counts[candidate] -= 1
            if not self._counts[candidate]:
                del self._counts[candidate]
            self._total -= 1
            return True
        return False

    def remove_all(self, dialog: Dialog) -> int:
        """Remove every link of ``dialog`` (it ended); how many went."""
        gone = 0
        for key in [k for k, m in self._members.items() if dialog in m]:
            n = self._members[key].pop(dialog)
            if not self._members[key]:
                del self._members[key]
            self._counts[key] -= n
            if not self._counts[key]:
                del self._counts[key]
            self._total -= n
            gone += n
        return gone

    def contains(self, dialog: Dialog, value: str | None = None) -> bool:
        """Kamailio: ``is_in_profile(profile[, value])``."""
        key = self._key(value)
        if value is None or not self.has_value:
            return any(dialog in m for m in self._members.values())
        return dialog in self._members.get(key, {})

    def size(self, value: str | None = None) -> int:
        """Kamailio: ``get_profile_size``; remote items count too."""
        key = self._key(value)
        if key is None:
            return self._total + len(self._remote)
        return self._counts.get(key, 0) + sum(1 for r in self._remote.values() if r.value == key)

    def dialogs(self, value: str | None = None) -> Iterator[Dialog]:
        """Kamailio: ``dlg.profile_list``: each member dialog once."""
        key = self._key(value)
        if key is None:
            seen: set[int] = set()
            for members in self._members.values():
                for dialog in members:
                    if id(dialog) not in seen:
                        seen.add(id(dialog))
                        yield dialog
        else:
            yield from self._members.get(key, {})

    def values(self) -> list[str]:
        return [k for k in self._counts if k is not None]

    # -- remote items ------------------------------------------------------

    def remote_items(self) -> list[RemoteItem]:
        return list(self._remote.values())


class ProfileTable:
    """Every profile the tracker knows, by name."""

    def __init__(self, with_value: tuple[str, ...] = (), no_value: tuple[str, ...] = ()) -> None:
        self._profiles: dict[str, Profile] = {}
        self._remote_timers: TimerQueue[tuple[Profile, str]] = TimerQueue()
        for name in with_value:
            self.define(name, has_value=True)
        for name in no_value:
            self.define(name, has_value=False)

    def define(self, name: str, *, has_value: bool) -> Profile:
        if name in self._profiles:
            raise LocalProtocolError(f"profile {name} is already defined")
        profile = self._profiles[name] = Profile(name, has_value)
        return profile

    def __getitem__(self, name: str) -> Profile:
        profile = self._profiles.get(name)
        if profile is None:
            raise LocalProtocolError(f"no dialog profile named {name!r}")
        return profile

    def __contains__(self, name: object) -> bool:
        return name in self._profiles

    def __iter__(self) -> Iterator[Profile]:
        return iter(self._profiles.values())

    def remote_add(self, name: str, value: str | None, uid: str, expires: float) -> None:
        """``dlg_remote_profile("add", ...)``: ``expires`` is an absolute time
        on the tracker's clock. Adding a uid again refreshes it."""
        profile = self[name]
        key = profile._key(value)
        old = profile._remote.pop(uid, None)
        if old is not None and old._timer is not None:
            self._remote_timers.cancel(old._timer)
        item = RemoteItem(key, uid, expires)
        item._timer = self._remote_timers.add(expires, (profile, uid))
        profile._remote[uid] = item

    def remote_remove(self, name: str, value: str | None, uid: str) -> bool:
        """``dlg_remote_profile("rm", ...)``."""
        profile = self[name]
        item = profile._remote.get(uid)
        if item is None or (profile.has_value and value is not None and item.value != value):
            return False
        del profile._remote[uid]
        if item._timer is not None:
            self._remote_timers.cancel(item._timer)
        return True

    def next_deadline(self) -> float | None:
        return self._remote_timers.next_deadline()

    def expire(self, now: float) -> int:
        """Drop the remote items whose expiry has passed; how many went."""
        gone = 0
        for profile, uid in self._remote_timers.pop_due(now):
            if profile._remote.pop(uid, None) is not None:
                gone += 1
        return gone
