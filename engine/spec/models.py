"""Models behind `llm` actions: one per provider, discriminated by `provider`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import EnvRef, StrictModel, Template

# A number, or a template rendering to one (`"{{ params.temperature }}"`).
Number = Annotated[float | Template, Field(description="A number, or a template giving one.")]
Count = Annotated[int | Template, Field(description="A whole number, or a template giving one.")]


class Timeouts(StrictModel):
    """How long a model call may take."""

    connect: float = Field(10.0, gt=0, le=120, description="Seconds to open the connection.")
    total: float = Field(
        120.0, gt=0, le=590, description="Seconds for the whole answer (Poe's limit is 600)."
    )


class _Model(StrictModel):
    temperature: Number | None = Field(
        None, description="Sampling temperature, clamped to what the provider accepts."
    )
    max_tokens: Count | None = Field(None, description="Longest answer, in tokens.")
    top_p: Number | None = Field(None, description="Nucleus sampling, 0 to 1; clamped.")
    stop: list[Template] | None = Field(
        None, max_length=4, description="Stop sequences (templates; blank ones are left out)."
    )
    timeout: Timeouts = Field(default_factory=Timeouts, description="Connect and total limits.")
    retries: int = Field(
        2, ge=0, le=5, description="Extra tries on 429, 5xx or network errors, before any text."
    )


class OpenAIModel(_Model):
    """OpenAI, or any OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio)."""

    provider: Literal["openai"] = Field(description="Provider.")
    name: str = Field(min_length=1, description="Model name, such as `gpt-4o-mini`.")
    base_url: str | None = Field(
        None,
        description="Server URL, or `${ENV_VAR}`; default: OPENAI_BASE_URL, else OpenAI.",
        examples=["http://127.0.0.1:11434/v1"],
    )
    api_key: EnvRef | None = Field(None, description="`${ENV_VAR}`; default OPENAI_API_KEY.")


class AnthropicModel(_Model):
    """Anthropic's Claude models (current models take no `temperature` or `top_p`)."""

    provider: Literal["anthropic"] = Field(description="Provider.")
    name: str = Field(min_length=1, description="Model name, such as `claude-haiku-4-5`.")
    base_url: str | None = Field(
        None, description="Server URL; default: ANTHROPIC_BASE_URL, else Anthropic's API."
    )
    api_key: EnvRef | None = Field(None, description="`${ENV_VAR}`; default ANTHROPIC_API_KEY.")


class PoeModel(_Model):
    """Another bot on Poe, called with this bot's access key (declared as a dependency)."""

    provider: Literal["poe"] = Field(description="Provider.")
    bot: str = Field(min_length=1, description="The Poe bot's name, such as `Claude-Haiku-4.5`.")
    base_url: str = Field(
        "https://api.poe.com/bot/", description="Poe's bot query API; ends with a slash."
    )

    @model_validator(mode="after")
    def _slash(self) -> PoeModel:
        if not self.base_url.endswith("/"):
            raise ValueError(f"base_url must end with '/': {self.base_url!r}")
        return self


class ScriptedModel(StrictModel):
    """Replies written here, streamed word by word: for tests, demos and offline work."""

    provider: Literal["scripted"] = Field(description="Provider.")
    replies: list[str] = Field(
        min_length=1, description="Reply for each turn, in order; the last one repeats."
    )
    delay: float = Field(0.0, ge=0, le=10, description="Seconds between chunks.")
    chunk: Literal["word", "char", "all"] = Field("word", description="How replies are split.")


ModelRef = Annotated[
    OpenAIModel | AnthropicModel | PoeModel | ScriptedModel, Field(discriminator="provider")
]
ModelChain = ModelRef | Annotated[list[ModelRef], Field(min_length=1)]
