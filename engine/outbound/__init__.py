"""Calls to outside HTTP APIs for `call` steps (issue 9): one call, made safely.

How to wire it (the spec and runtime side):

    # At load, each a ValueError whose text is the SpecError's message:
    policy = HostPolicy.from_entries(bot.allow_hosts)   # one entry at a time, to locate it
    origin = template_origin(call.url)                  # the URL's host is written, not filled

    # At each turn: render `url` with every `{{ }}` value passed through `quote_value`
    # (Jinja's `finalize=quote_value`); render query values, headers (`${ENV}` secrets)
    # and the body plainly.
    try:
        response = fetch(
            OutboundRequest(call.method, url, query=query, headers=headers, body=body,
                            timeout=call.timeout, origin=origin),
            policy,
        )
        data = response.json()          # None for an empty body; CallError `bad_json`
    except CallError as error:          # error.kind picks the error branch;
        ...                             # str(error) is for the creator and the logs
    # then each `extract:` JMESPath expression over `data` into `vars`.

What it guarantees:
- Only hosts in `allow_hosts` are called, the first URL's and every redirect's (at most
  `max_redirects`, each checked as the first). Names resolve once, and every address is
  checked before any is connected to (`network.py`), so neither DNS nor a redirect leads
  into a private, loopback or link-local network that `allow_hosts` does not list.
- Values cannot move a call: its origin is fixed by the template, checked again after
  rendering, and quoted values stay inside their path segment or query value.
- An answer is read up to `max_bytes`, decompressed, whatever Content-Length says; each
  try ends within `timeout` seconds; only idempotent methods are tried again.
- Header values (where secrets go) are never logged, nor put in an error's text.
- Blocking happens only in sockets and `socket.getaddrinfo`: cooperative under gevent.
"""

from __future__ import annotations

from .call import fetch
from .models import CallError, CallErrorKind, OutboundRequest, OutboundResponse
from .network import Resolver
from .policy import HostPolicy
from .urls import Origin, quote_value, template_origin

__all__ = [
    "CallError",
    "CallErrorKind",
    "HostPolicy",
    "Origin",
    "OutboundRequest",
    "OutboundResponse",
    "Resolver",
    "fetch",
    "quote_value",
    "template_origin",
]
