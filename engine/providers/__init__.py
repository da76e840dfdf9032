"""Model providers behind one call: `open_stream(model, call)` returns a chunk stream.

Each SDK is imported only when a model of its provider is first called.
"""

from __future__ import annotations

import contextlib
import importlib
import platform
from collections.abc import Iterable

from ..compiled import CompiledModel
from ..spec.models import AnthropicModel, OpenAIModel, PoeModel, ScriptedModel
from .base import ChunkStream, ModelCall, ProviderError, WholeText, clean_call
from .scripted import ScriptedStream, reply_for_turn

__all__ = ["ChunkStream", "ModelCall", "ProviderError", "open_stream", "preload"]


def preload(providers: Iterable[str]) -> None:
    """Import the SDKs these providers need now, at start-up: importing one takes up to a
    second, which on first use would stall every conversation of a gevent worker. And read
    what the SDKs say of the platform in every request's headers (`read_platform`)."""
    modules = {"openai": "openai", "anthropic": "anthropic", "poe": "engine.providers.poe"}
    wanted = set(providers)
    for provider in sorted(wanted):
        if provider in modules:
            importlib.import_module(modules[provider])
    if wanted & {"openai", "anthropic"}:
        read_platform()


def read_platform() -> None:
    """Read once, at start-up (in the server's master, before its workers fork), the
    platform facts the openai and anthropic SDKs send with every request (X-Stainless-OS).

    The SDKs read them at their first request, and `platform.platform()` runs `uname -p` in
    a subprocess to do it. Under gevent that subprocess waits cooperatively, so every
    request that starts meanwhile runs one too: a new worker's first burst of model calls
    forked the worker once per call (the profile of a 200-conversation burst on a fresh
    worker: a quarter of its CPU). The standard library keeps what it read.
    """
    platform.platform()
    with contextlib.suppress(OSError):
        platform.freedesktop_os_release()


def open_stream(model: CompiledModel, call: ModelCall) -> ChunkStream:
    """Start the model's answer; raises ProviderError when it cannot start.

    Text crosses this edge as text, both ways: the call's and the answer's surrogates
    are paired or replaced (`clean_call`, `WholeText`).
    """
    return WholeText(_open(model, clean_call(call)))


def _open(model: CompiledModel, call: ModelCall) -> ChunkStream:
    spec = model.spec
    if isinstance(spec, ScriptedModel):
        return ScriptedStream(reply_for_turn(spec.replies, call.turn), spec.delay, spec.chunk)
    if isinstance(spec, OpenAIModel):
        from . import openai

        return openai.open_stream(spec, model.api_key, model.base_url, call)
    if isinstance(spec, AnthropicModel):
        from . import anthropic

        return anthropic.open_stream(spec, model.api_key, model.base_url, call)
    assert isinstance(spec, PoeModel)
    from . import poe

    return poe.open_stream(spec, call)
