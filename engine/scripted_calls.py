"""`call` steps answered from a test's `http_reply:` instead of the network.

The host checks still run (the bot's `allow_hosts` and the URL's written origin), so a
declared test sees the same refusals a real call would; only the exchange is scripted.
"""

from __future__ import annotations

import json

import httpx

from .outbound import CallError, HostPolicy, Origin, OutboundRequest, OutboundResponse
from .spec.tests import HttpReply


class ScriptedCalls:
    """Answers each call with the next scripted reply; records what was asked for."""

    def __init__(self, replies: HttpReply | list[HttpReply] | None) -> None:
        self._replies = [replies] if isinstance(replies, HttpReply) else list(replies or [])
        self.problems: list[str] = []

    def __call__(self, request: OutboundRequest, policy: HostPolicy) -> OutboundResponse:
        method = request.method.upper()
        url = httpx.URL(request.url)
        if request.query:
            url = url.copy_merge_params(dict(request.query))
        host = url.raw_host.decode("ascii")
        if request.origin is not None and Origin.of(url) != request.origin:
            detail = f"the URL calls {Origin.of(url)}, but it is written for {request.origin}"
            raise CallError("refused_host", detail, method, host)
        refusal = policy.host_refusal(host)
        if refusal is not None:
            raise CallError("refused_host", refusal, method, host)
        if not self._replies:
            problem = (
                f"the bot called {method} {url}; script its answer with `http_reply:` "
                "(declared tests never call real APIs)"
            )
            self.problems.append(problem)
            raise CallError("connect", "no scripted answer (http_reply)", method, host)
        return _answer(self._replies.pop(0), method, url, host)


def _answer(reply: HttpReply, method: str, url: httpx.URL, host: str) -> OutboundResponse:
    if reply.error is not None:
        raise CallError(reply.error, f"scripted failure: {reply.error}", method, host)
    body = b"" if reply.json_body is None else json.dumps(reply.json_body).encode()
    headers = {"content-type": "application/json"}
    response = OutboundResponse(reply.status, headers, body, method, str(url), 0.0)
    if not 200 <= reply.status < 300:
        detail = f"answered HTTP {reply.status}"
        raise CallError("status", detail, method, host, status=reply.status, response=response)
    return response
