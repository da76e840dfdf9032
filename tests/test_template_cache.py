"""The disk cache of compiled templates: same answers, no recompiling, never a failed load."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.loader import load_text
from engine.template_cache import TemplateCache
from engine.templates import JinjaTemplate, TemplateCompiler

CONTEXT = ("message", "params")
SOURCE = "Hi {{ message | upper }}{% include 'sig' %}"


def _compiler(
    cache: TemplateCache | None, prompts: dict[str, str] | None = None
) -> TemplateCompiler:
    return TemplateCompiler(prompts if prompts is not None else {"sig": "!"}, CONTEXT, cache)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_a_cached_template_renders_the_same_without_compiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = TemplateCache(tmp_path)
    first = _compiler(cache).compile(SOURCE)
    assert first.render({"message": "bob"}) == "Hi BOB!"
    assert len(_files(tmp_path)) == 1

    def refuse(*_: object) -> None:
        raise AssertionError("a cached template was compiled again")

    monkeypatch.setattr(TemplateCompiler, "_compile_checked", refuse)
    second = _compiler(TemplateCache(tmp_path)).compile(SOURCE)
    assert isinstance(second, JinjaTemplate)
    assert second.render({"message": "ann"}) == "Hi ANN!"


def test_the_key_covers_what_the_checks_depend_on(tmp_path: Path) -> None:
    cache = TemplateCache(tmp_path)
    key = cache.key(SOURCE, ["sig"], CONTEXT)
    assert key != cache.key(SOURCE + " ", ["sig"], CONTEXT)
    assert key != cache.key(SOURCE, [], CONTEXT)  # the include must be re-checked
    assert key != cache.key(SOURCE, ["sig"], ("message",))
    assert key == TemplateCache(tmp_path / "elsewhere").key(SOURCE, ["sig"], CONTEXT)


def test_a_hit_still_refuses_a_template_whose_prompt_is_gone(tmp_path: Path) -> None:
    cache = TemplateCache(tmp_path)
    _compiler(cache).compile(SOURCE)
    with pytest.raises(Exception, match="unknown prompt 'sig'"):
        _compiler(cache, prompts={}).compile(SOURCE)


def test_broken_templates_are_not_stored(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="unknown variable 'mesage'"):
        _compiler(TemplateCache(tmp_path)).compile("{{ mesage }}")
    assert _files(tmp_path) == []


def test_a_damaged_entry_is_compiled_again(tmp_path: Path) -> None:
    cache = TemplateCache(tmp_path)
    _compiler(cache).compile(SOURCE)
    (entry,) = _files(tmp_path)
    entry.write_bytes(b"not marshal data")
    assert _compiler(TemplateCache(tmp_path)).compile(SOURCE).render({"message": "x"}) == "Hi X!"


def test_a_cache_in_place_of_a_file_only_costs_the_speed_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder should be", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        template = _compiler(TemplateCache(blocker)).compile(SOURCE)
    assert template.render({"message": "x"}) == "Hi X!"
    assert "is not writable" in caplog.text


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"ENGINE_CACHE_DIR": "off"}, None),
        ({"ENGINE_CACHE_DIR": "/srv/cache"}, Path("/srv/cache")),
        ({"XDG_CACHE_HOME": "/x"}, Path("/x/poe-yaml-bots")),
    ],
)
def test_where_the_cache_lives(environ: dict[str, str], expected: Path | None) -> None:
    cache = TemplateCache.from_env(environ)
    assert (cache.folder if cache else None) == expected


def test_loading_a_bot_twice_through_the_cache_gives_the_same_answers(tmp_path: Path) -> None:
    text = "routes:\n  - reply: 'You said {{ message }} on turn {{ turn }}'\n"
    cache = TemplateCache(tmp_path)
    first, _ = load_text(text, "a.yaml", {}, cache)
    second, _ = load_text(text, "a.yaml", {}, cache)
    assert first is not None and second is not None
    context = {"message": "hi", "turn": 2}
    assert first.routes[0].reply.render(context) == second.routes[0].reply.render(context)  # type: ignore[union-attr]
    assert len(_files(tmp_path)) == 1
