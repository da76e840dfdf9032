"""Model chains: secrets resolved from the environment, parameter templates compiled."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from ..compiled import Chain, CompiledModel, CompiledRoute, Param, route_models
from ..providers.sdk import KEY_VARIABLES
from ..spec._base import ENV_REF
from ..spec.models import (
    AnthropicModel,
    ModelChain,
    ModelRef,
    OpenAIModel,
    PoeModel,
    ScriptedModel,
)
from .checker import SourceChecker
from .yaml_marks import Loc

# How the names of the models each provider's own API serves begin.
MODEL_FAMILIES = {
    "openai": ("gpt-", "chatgpt-", "o1", "o3", "o4", "codex-"),
    "anthropic": ("claude-",),
}
# Where each SDK looks for its server when the model names none.
BASE_URL_VARIABLES = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}
NOT_CONFIGURED_UNTIL_SET = "until it is, this model answers that the bot's model is not configured"


class ModelCompiler:
    """Turns `model:` values into chains; an unset key is a warning, since the rest works."""

    def __init__(
        self,
        checker: SourceChecker,
        environ: Mapping[str, str],
        has_access_key: bool,
    ) -> None:
        self._checker = checker
        self._environ, self._has_access_key = environ, has_access_key

    def chain(self, value: ModelChain | None, loc: Loc) -> Chain:
        if value is None:
            return ()
        models = value if isinstance(value, list) else [value]
        if isinstance(value, list):
            return tuple(self._model(m, (*loc, i)) for i, m in enumerate(models))
        return (self._model(value, loc),)

    def _model(self, spec: ModelRef, loc: Loc) -> CompiledModel:
        if isinstance(spec, ScriptedModel):
            return CompiledModel(spec)
        if isinstance(spec, PoeModel) and not self._has_access_key:
            self._warn(
                loc,
                f"calling the Poe bot {spec.bot} needs this bot's access key",
                "set `access_key` and its variable; until then this model fails",
            )
        if isinstance(spec, AnthropicModel):
            self._warn_unsent_sampling(spec, loc)
        api_key = base_url = None
        if isinstance(spec, OpenAIModel | AnthropicModel):
            base_url = self._base_url(spec, loc)
            api_key = self._api_key(spec, base_url, loc)
            self._warn_unknown_name(spec, base_url, loc)
        return CompiledModel(
            spec,
            api_key=api_key,
            base_url=base_url,
            temperature=self._param(spec.temperature, (*loc, "temperature")),
            max_tokens=self._param(spec.max_tokens, (*loc, "max_tokens")),
            top_p=self._param(spec.top_p, (*loc, "top_p")),
            stop=tuple(
                self._checker.template(text, (*loc, "stop", index))
                for index, text in enumerate(spec.stop or ())
            ),
        )

    def _base_url(self, spec: OpenAIModel | AnthropicModel, loc: Loc) -> str | None:
        """The model's server: its own `base_url`, else the SDK's variable (OPENAI_BASE_URL,
        ANTHROPIC_BASE_URL), resolved here so that the compiled model says where it goes."""
        given = self._resolve(spec.base_url, (*loc, "base_url"))
        return given or self._environ.get(BASE_URL_VARIABLES[spec.provider]) or None

    def _warn_unknown_name(
        self, spec: OpenAIModel | AnthropicModel, base_url: str | None, loc: Loc
    ) -> None:
        """A name the provider's own API does not serve is most likely a typo. Servers
        given by `base_url` (or OPENAI_BASE_URL, ANTHROPIC_BASE_URL) serve names of their own:
        not checked."""
        if base_url is not None:
            return
        families = MODEL_FAMILIES[spec.provider]
        if not spec.name.startswith(families):
            self._warn(
                (*loc, "name"),
                f"{spec.name!r} is not a known {spec.provider} model name",
                f"{spec.provider} model names start with {' or '.join(families)}; "
                "until it is fixed, answers say the bot's model is not configured",
            )

    def _api_key(
        self, spec: OpenAIModel | AnthropicModel, base_url: str | None, loc: Loc
    ) -> str | None:
        """The key, or None. Without one, a model on the provider's own API is never called
        (engine/providers/sdk.py); one on a server of its own (Ollama) may need none."""
        hint = None if base_url else NOT_CONFIGURED_UNTIL_SET
        if spec.api_key is not None:
            return self._resolve(spec.api_key, (*loc, "api_key"), hint)
        variable = KEY_VARIABLES[spec.provider]
        value = self._environ.get(variable) or None
        if value is None and hint is not None:
            self._warn(loc, f"environment variable {variable} is not set", hint)
        return value

    def _warn_unsent_sampling(self, spec: AnthropicModel, loc: Loc) -> None:
        """Anthropic's API (version 2026-10-21, which the anthropic SDK 2.x speaks) rejects
        temperature and top_p, so the provider leaves them out."""
        for name in ("temperature", "top_p"):
            if getattr(spec, name) is not None:
                self._warn(
                    (*loc, name),
                    f"Anthropic models no longer accept {name}; it is not sent",
                    f"remove `{name}` (shape answers with the system prompt instead)",
                )

    def _resolve(self, value: str | None, loc: Loc, hint: str | None = None) -> str | None:
        """`${VAR}` to its value (warning when unset); any other text as written."""
        if value is None:
            return None
        match = ENV_REF.match(value)
        if match is None:
            return value
        resolved = self._environ.get(match.group(1)) or None
        if resolved is None:
            self._warn(loc, f"environment variable {match.group(1)} is not set", hint)
        return resolved

    def _param(self, value: float | int | str | None, loc: Loc) -> Param:
        if isinstance(value, str):
            return self._checker.template(value, loc)
        return value

    def _warn(self, loc: Loc, message: str, hint: str | None) -> None:
        self._checker.report(loc, message, hint, warning=True)


def dependencies(routes: tuple[CompiledRoute, ...]) -> dict[str, int]:
    """Poe bots called, with the most calls one user message can make to each."""
    most: Counter[str] = Counter()
    for route in routes:
        calls: Counter[str] = Counter()
        for model in route_models(route):
            if isinstance(model.spec, PoeModel):
                calls[model.spec.bot] += model.retries + 1
        most |= calls  # Counter union keeps the maximum per bot
    return dict(sorted(most.items()))
