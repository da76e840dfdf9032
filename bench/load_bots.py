"""Time and memory to load and validate 1,000 generated bot files with `load_paths`.

`python -m bench.load_bots [--bots 1000] [--profile]` writes realistic bot files into a temp
folder (input rules, prompts, several routes with regex and JMESPath conditions, Jinja
replies, suggestions, parameter controls on some, declared tests), loads them the way the
server and `validate` do at start-up (one process per core), then in one process, and prints
one JSON object. Every file is different (its own words, patterns and numbers), so no cache
keyed on repeated text could flatter the result.

Loading checks each template completely but generates its Python code at its first render;
`first_render_build_seconds` is that deferred cost for every template of every bot, so the
work moved out of the load is measured too.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import json
import pstats
import random
import resource
import string
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from string import Template

from engine.compiled import CompiledBot
from engine.loader import load_paths
from engine.loader.parallel import default_jobs
from engine.templates import JinjaTemplate, Renderable, TemplateCompiler

WORDS = [
    "order",
    "refund",
    "shipping",
    "delivery",
    "invoice",
    "account",
    "password",
    "upgrade",
    "plan",
    "billing",
    "card",
    "return",
    "warranty",
    "repair",
    "install",
    "setup",
    "login",
    "email",
    "address",
    "phone",
    "store",
    "hours",
    "price",
    "discount",
    "coupon",
    "gift",
    "size",
    "color",
    "stock",
    "track",
    "cancel",
    "change",
    "update",
    "export",
    "import",
]

# string.Template, so Jinja's and YAML's braces need no escaping; $names are filled per bot.
BOT = Template(r"""# Generated benchmark bot $index: $a, $b and $c questions.
name: bot-$index
description: Answers $a, $b and $c questions for shop $index.
${key_line}greeting: |
  Hi! I'm bot $index. Ask me about **$a**, **$b** or **$c**.
suggested_replies: [Tell me about $a, "{{ 'More on ' ~ '$b' }}", Talk to a human]

prompts:
  sig: "\n\n— Shop $index support"
  policy: >-
    Our $d policy covers $days days.{% if turn > 2 %} Thanks for chatting.{% endif %}

input:
  min_length: $min_length
  max_length: $max_length
  reject: ['(?i)\b${f}word\b', '\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{$digits}\b']
  attachments: {max: $max_attachments}
  error_type: user_caused_error
$controls
routes:
  - if: "regex(message, '(?i)\\b($a|${a}s|$b back)\\b')"
    reply: >-
      About $a: it takes **$low-$high days**.{% include "policy" %}{% include "sig" %}
    suggest: [Start a $a, "How long is $b?"]
  - if: "contains_any(lower(message), ['$b', '$c', 'how long'])"
    reply: >-
      $B and $c: {{ message | upper | truncate(40) }} — usually $usual days.
      {%- include "sig" %}
    suggest: ["{{ 'Ask about ' ~ '$a' if turn == 1 else 'Goodbye' }}"]
  - if: "regex(message, '(?i)\\b$d\\b') && regex(message, '[A-Z]{2}\\d{$digits}')"
    reply: >-
      $D {{ message | replace('$token', '**') }} needs a human;
      email $d@shop$index.example.
$param_route  - if: "starts_with_any(lower(trim(message)), ['talk to a human', 'human', 'agent'])"
    error:
      text: Our team is offline. Please email help@shop$index.example.
      allow_retry: false
  - if: "turn > `$turns` && word_count(message) < `3`"
    reply: >-
      Could you tell me a bit more?
      {% for m in history[-2:] %}({{ m.role }}) {% endfor %}
  - reply: |
      I can help with $a, $b and $c. You said: "{{ message }}" on turn {{ turn }}.

tests:
$tests""")

CONTROLS = """
settings:
  allow_attachments: true
  parameter_controls:
    api_version: "2"
    sections:
      - name: Options
        controls:
          - control: drop_down
            label: Tone
            parameter_name: tone
            default_value: friendly
            options:
              - {value: friendly, name: Friendly}
              - {value: formal, name: Formal}
          - control: slider
            label: Detail
            parameter_name: detail
            default_value: %s
            min_value: 0
            max_value: 1
            step: 0.1
"""

PARAM_ROUTE = Template(r"""  - if: "params.tone == 'formal' && regex(message, '(?i)\\b${e}s?\\b')"
    reply: "Dear customer, regarding $e: {{ message | truncate(60) }}{% include 'sig' %}"
""")

FIRST_ROUTE_TEST = """  - name: the first route answers
    say: I want a %s
    expect: {contains: "About %s"}
"""
FALLBACK_TEST = """  - name: anything else gets the fallback
    say: hello there
    expect: {contains: "I can help"}
"""


def bot_yaml(index: int, rng: random.Random) -> str:
    """One bot; a third of them with parameter controls and a route reading them."""
    a, b, c, d, e, f = rng.sample(WORDS, 6)
    with_controls = index % 3 == 0
    low = rng.randint(1, 9)
    return BOT.substitute(
        index=f"{index:04d}",
        key_line=f"access_key: ${{BOT_{index:04d}_KEY}}\n" if index % 2 == 0 else "",
        a=a,
        b=b,
        B=b.title(),
        c=c,
        d=d,
        D=d.title(),
        f=f,
        days=rng.randint(7, 90),
        min_length=rng.randint(1, 3),
        max_length=rng.randint(200, 2000),
        digits=rng.randint(4, 8),
        max_attachments=rng.randint(0, 3),
        controls=CONTROLS % round(rng.random(), 1) if with_controls else "",
        low=low,
        high=low + rng.randint(2, 10),
        usual=rng.randint(2, 6),
        token="".join(rng.choices(string.ascii_uppercase, k=2)),
        param_route=PARAM_ROUTE.substitute(e=e) if with_controls else "",
        turns=rng.randint(2, 5),
        tests=FIRST_ROUTE_TEST % (a, a) if with_controls else FALLBACK_TEST,
    )


def write_bots(folder: Path, count: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    size = 0
    for index in range(count):
        text = bot_yaml(index, rng)
        (folder / f"bot-{index:04d}.yaml").write_text(text, encoding="utf-8")
        size += len(text.encode())
    return size


def measure(count: int, profile: bool, trace: bool) -> dict[str, object]:
    env = {f"BOT_{i:04d}_KEY": "k" * 32 for i in range(0, count, 2)}
    with tempfile.TemporaryDirectory(prefix="bench-bots-") as tmp:
        folder = Path(tmp)
        size = write_bots(folder, count)
        gc.collect()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        report = load_paths([folder], env)  # as the server and `validate` load
        seconds = time.perf_counter() - start
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result: dict[str, object] = {
            "bots": len(report.bots),
            "files": report.files,
            "errors": len(report.errors),
            "warnings": len(report.warnings),
            "mb_of_yaml": round(size / 2**20, 2),
            "processes": default_jobs(count),
            "seconds": round(seconds, 3),
            "ms_per_bot": round(seconds * 1000 / max(count, 1), 3),
            "max_rss_mb": round(rss_after / 1024, 1),
            "rss_growth_mb": round((rss_after - rss_before) / 1024, 1),
            "child_max_rss_mb": round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
            ),
        }
        if report.errors:
            result["first_error"] = str(report.errors[0])
        result["first_render_build_seconds"] = round(_build_every_template(report.bots), 3)
        del report
        gc.collect()
        with _timed_templates() as template_seconds:
            start = time.perf_counter()
            load_paths([folder], env, jobs=1)
            result["one_process_seconds"] = round(time.perf_counter() - start, 3)
        result["jinja_templates"] = template_seconds[1]
        result["template_check_seconds"] = round(template_seconds[0], 3)
        if trace:  # slow (about 5x): a separate load, whose peak is what loading allocates
            tracemalloc.start()
            load_paths([folder], env, jobs=1)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            result["tracemalloc_peak_mb"] = round(peak / 2**20, 1)
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            load_paths([folder], env, jobs=1)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
            result["profile"] = out.getvalue()
    return result


def _build_every_template(bots: Mapping[str, CompiledBot]) -> float:
    """Generate and compile the code of every Jinja template, as first renders would."""
    templates = [t for bot in bots.values() for t in _renderables(bot)]
    start = time.perf_counter()
    for template in templates:
        template.prepare()
    return time.perf_counter() - start


def _renderables(value: object) -> Iterator[JinjaTemplate]:
    if isinstance(value, JinjaTemplate):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _renderables(getattr(value, item.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _renderables(item)


@contextmanager
def _timed_templates() -> Iterator[list[float]]:
    """Time spent checking Jinja templates at load (plain text ones are free), and how many."""
    totals: list[float] = [0.0, 0]
    original = TemplateCompiler.compile

    def compile_timed(self: TemplateCompiler, source: str, loc: str = "template") -> Renderable:
        start = time.perf_counter()
        try:
            return original(self, source, loc)
        finally:
            if any(marker in source for marker in ("{{", "{%", "{#")):
                totals[0] += time.perf_counter() - start
                totals[1] += 1

    TemplateCompiler.compile = compile_timed  # type: ignore[method-assign]
    try:
        yield totals
    finally:
        TemplateCompiler.compile = original  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="add a cProfile of one load")
    parser.add_argument("--tracemalloc", action="store_true", help="add tracemalloc's peak (slow)")
    parser.add_argument("--sample", action="store_true", help="print one generated file")
    args = parser.parse_args()
    if args.sample:
        print(bot_yaml(3, random.Random(1)))
        return
    result = measure(args.bots, args.profile, args.tracemalloc)
    profile = result.pop("profile", None)
    print(json.dumps(result))
    if profile:
        print(profile)


if __name__ == "__main__":
    main()
