"""The dashboard search's text of a ticket, stored in ``tickets.search_text`` (revision 0010).

The search keeps a ticket when every word of the query is a substring of this text: the
texts of ``SEARCHED`` in what the helpdesk shows (``tickets.shown``), with the ticket's key
as people write it (``zd-123``, ``zendesk:123``, ``123``), case-folded (``str.casefold``) and
joined by line breaks. It is computed here, in Python, whenever ``shown`` is written, so the
same words match on SQLite and PostgreSQL; on PostgreSQL a trigram index of it (``pg_trgm``,
GIN) answers ``search_text LIKE '%word%'`` without reading the other tickets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SEARCHED = (
    "key",
    "subject",
    "requester",
    "requester_name",
    "requester_email",
    "organization",
    "organization_name",
    "assignee",
    "assignee_name",
    "assignee_email",
    "queue",
)
"""The keys of ``tickets.shown`` the search reads when the connector stored them (a string,
or an object whose ``name``, ``email`` or ``display_name`` is one). Subject, requester,
organization and the assignee's name are read as soon as a connector stores them."""
NAMED = ("name", "display_name", "email")
"""The keys of a shown object (a person, an organization) that name it."""


def shown_texts(value: Any) -> Iterable[str]:
    """The strings a shown value carries: itself, an object's ``NAMED`` keys, a list's."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key in NAMED:
            if isinstance(value.get(key), str):
                yield value[key]
    elif isinstance(value, list | tuple):
        for item in value:
            yield from shown_texts(item)


def search_text(source: str, external_key: str, shown: Mapping[str, Any] | None) -> str:
    """The text the search matches for a ticket (see the module's docstring). A superset of
    what its dashboard row shows: the row's label is ZD-<key> for Zendesk, the issue key for
    Jira (``shown["key"]``), else the ref."""
    shown = shown if isinstance(shown, Mapping) else {}
    labels = [
        f"zd-{external_key}",
        f"{source}:{external_key}",
        external_key,
        shown.get("assignee_email"),
        shown.get("queue"),
    ]
    texts = [text for text in labels if isinstance(text, str)]
    for name in SEARCHED:
        texts.extend(shown_texts(shown.get(name)))
    return "\n".join(texts).casefold()


def like_pattern(word: str) -> str:
    """``%word%`` for ``LIKE ... ESCAPE '\\'``: the word's own ``%``, ``_`` and ``\\`` escaped."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
