"""The warnings of a file whose structure did not validate, found in its raw data.

A structural error leaves no Bot to compile, yet the access key, each model that is
valid on its own and the order of the routes can still be read, and `validate` prints
every problem in one pass. The same functions judge them as for a valid file; only
where to find them differs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..errors import SpecError
from ..spec.models import ModelChain
from .checker import SourceChecker
from .compile import reachability
from .keys import access_key
from .models import ModelCompiler
from .yaml_marks import Loc, MarkedDocument


@cache
def _chains() -> TypeAdapter[ModelChain]:
    return TypeAdapter(ModelChain)


def unvalidated_problems(
    document: MarkedDocument, file: str, environ: Mapping[str, str]
) -> list[SpecError]:
    """The key's and the models' warnings, and the routes' order, of a file that did not
    validate; templates and conditions are `check_sources`'s."""
    data = document.data if isinstance(document.data, dict) else {}
    written = data.get("access_key")
    key, problems = access_key(
        written if isinstance(written, str) else None, document, file, environ
    )
    # A key written wrong has its own error: the models that need one are not told again.
    has_key = key.value is not None or (written is not None and key.variable is None)
    checker = SourceChecker(document, file, {})
    models = ModelCompiler(checker, environ, has_key)
    for loc, value in _model_values(data):
        try:
            chain = _chains().validate_python(value)
        except ValidationError:
            continue  # its errors are reported already
        models.chain(chain, loc)
    problems += [problem for problem in checker.problems if problem.is_warning]
    routes = data.get("routes")
    if isinstance(routes, list) and routes and all(isinstance(r, dict) for r in routes):
        problems += reachability(document, file, [route.get("if") for route in routes])
    return problems


def _model_values(data: dict[Any, Any]) -> Iterator[tuple[Loc, Any]]:
    """Where a bot's raw data writes models: the bot's own, and each llm route's and
    generated suggestions' (the fields `spec.routes` gives a `model`)."""
    if "model" in data:
        yield ("model",), data["model"]
    routes = data.get("routes")
    for index, route in enumerate(routes if isinstance(routes, list) else []):
        for action in ("llm", "suggest"):
            part = route.get(action) if isinstance(route, dict) else None
            if isinstance(part, dict) and "model" in part:
                yield ("routes", index, action, "model"), part["model"]
