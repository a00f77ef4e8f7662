"""Reflection memory: an LLM distils episodic entries into insights, as an explicit step."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from pydantic import JsonValue

from ._base import BaseMemory, check_k
from ._embed import Embedder
from ._errors import MemoryConfigError, ReflectionError
from ._kinds import EpisodicMemory
from ._models import MemoryEntry, MemoryKind, ScoredEntry
from ._ops import ClearOp, MemoryOp
from ._snapshot import Snapshot

if TYPE_CHECKING:
    from ._backend import BaseMemoryStore

__all__ = ["CompleteFn", "ReflectionLLM", "ReflectionMemory", "parse_insights"]


class _HasText(Protocol):
    @property
    def text(self) -> str: ...


class ReflectionLLM(Protocol):
    """Any object with an async ``complete`` returning something with ``.text``.

    flowstate's LLM clients satisfy it; so does a test double. Messages are a list of
    ``{"role": "user", "content": "..."}`` dicts.
    """

    async def complete(
        self, messages: list[dict[str, str]], *, system: str | None = None, **kw: Any
    ) -> _HasText:
        """One completion."""
        ...


CompleteFn = Callable[..., Awaitable[str]]
"""A prompt-in, text-out coroutine function; lets the engine route the call via its journal.
When it accepts a `system` keyword, the reflection instructions go there (as a system prompt);
otherwise they lead the prompt."""


def _takes_system(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "system" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


REFLECTION_SYSTEM = (
    "You distil an agent's memories into durable, general insights: patterns, preferences, "
    "lessons and facts that will help it act better later."
)
"""The system prompt of a reflection call."""

_BULLET = re.compile(r"^\s*(?:[-*+•·–—]+|\(?\d{1,3}[.):]|\(?[a-zA-Z][.)])\s+")


def parse_insights(text: str) -> list[str]:
    """One insight per non-empty line, bullets and numbering stripped, duplicates dropped.

    ``"- a"``, ``"* a"``, ``"• a"``, ``"1. a"``, ``"2) a"``, ``"(3) a"`` and ``"a) a"`` all
    give ``"a"``. A line ending with ``:`` (a preamble such as "Insights:") is skipped.
    """
    insights: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        stripped = _BULLET.sub("", line, count=1).strip().strip("*_").strip()
        if not stripped or (stripped == line and line.endswith(":")):
            continue
        if stripped not in insights:
            insights.append(stripped)
    return insights


class ReflectionMemory(BaseMemory):
    """Episodic memory plus LLM-made insights about it.

    ``add`` stores an episodic entry (in the ``base`` :class:`EpisodicMemory`). After every
    ``every`` additions since the last reflection, :attr:`needs_reflection` becomes true; the
    caller then runs ``await memory.reflect()``, which sends the pending entries to the LLM
    and stores one reflection entry per insight line of its reply.

    Reflection is never started in the background. It is meant to be an explicit, awaited
    step (a node of the graph, or a step of one), so its LLM call is journaled and its
    writes are checkpointed with that step, and replay re-applies them instead of calling
    the LLM again. ``add`` only flips the flag.

    Which entries are pending is derived from the stored rows (base entries written after the
    newest reflection), so the cadence survives restarts and follows buffered writes.

    ``retrieve(query, k)`` mixes reflections and base entries: up to ``ceil(k *
    reflection_share)`` of the most similar reflections, the rest from the base, each side
    topping up when the other has too few; the result is sorted by cosine similarity.
    """

    kind: ClassVar[MemoryKind] = "reflection"

    def __init__(
        self,
        store: BaseMemoryStore,
        namespace: str = "default",
        *,
        every: int = 10,
        llm: ReflectionLLM | None = None,
        complete_fn: CompleteFn | None = None,
        max_sources: int = 50,
        insight_importance: float = 0.8,
        reflection_share: float = 0.5,
        base: EpisodicMemory | None = None,
        buffer: list[MemoryOp] | None = None,
        embedder: Embedder | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(store, namespace, buffer=buffer, embedder=embedder, clock=clock)
        where = f"ReflectionMemory(namespace={namespace!r})"
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise MemoryConfigError(f"{where}: every={every!r} must be an int >= 1")
        if llm is not None and complete_fn is not None:
            raise MemoryConfigError(
                f"{where} got both llm= and complete_fn=: pass one (complete_fn when the "
                "engine should journal the call)"
            )
        if llm is not None and not callable(getattr(llm, "complete", None)):
            raise MemoryConfigError(
                f"{where}: llm={llm!r} has no complete() method; pass an object with "
                "`async def complete(messages, *, system=None, **kw)`, or complete_fn="
            )
        if max_sources < 1:
            raise MemoryConfigError(f"{where}: max_sources={max_sources!r} must be >= 1")
        if not 0.0 <= insight_importance <= 1.0:
            raise MemoryConfigError(
                f"{where}: insight_importance={insight_importance!r} must be within 0..1"
            )
        if not 0.0 <= reflection_share <= 1.0:
            raise MemoryConfigError(
                f"{where}: reflection_share={reflection_share!r} must be within 0..1"
            )
        if base is not None and (
            base.store is not store or base.namespace != namespace or base.buffer is not buffer
        ):
            raise MemoryConfigError(
                f"{where}: base= must be an EpisodicMemory of the same store, namespace and "
                f"buffer, got {base!r}"
            )
        self.every = every
        """Additions after which :attr:`needs_reflection` turns true."""
        self.llm = llm
        """The LLM object used by :meth:`reflect` (or ``None``)."""
        self.complete_fn = complete_fn
        """The prompt-to-text coroutine used by :meth:`reflect` (or ``None``)."""
        self.max_sources = max_sources
        """At most this many pending entries (the newest) go into one prompt."""
        self.insight_importance = insight_importance
        """Importance given to each insight."""
        self.reflection_share = reflection_share
        """Share of ``retrieve``'s ``k`` reserved for reflections."""
        self.base: EpisodicMemory = base or EpisodicMemory(
            store, namespace, buffer=buffer, embedder=self.embedder, clock=self.clock
        )
        """Where the added (episodic) entries live."""

    # -- cadence --------------------------------------------------------------------------

    def _pending_slots(self) -> tuple[Snapshot, list[int]]:
        base = self.base._view()
        watermark = self._view().max_seq()
        live = base.live()
        newer = live[base.seq[live] > watermark]
        ordered = base.recent(newer)[::-1]  # oldest first
        return base, ordered.tolist()

    def pending(self) -> list[MemoryEntry]:
        """Base entries added since the last reflection, oldest first."""
        base, slots = self._pending_slots()
        return [e for e in self.base._entries(base, np.array(slots, dtype=int)) if e]

    @property
    def needs_reflection(self) -> bool:
        """True once ``every`` entries were added since the last reflection."""
        return len(self._pending_slots()[1]) >= self.every

    # -- writing --------------------------------------------------------------------------

    def add(
        self,
        content: str,
        *,
        importance: float = 0.5,
        metadata: Mapping[str, JsonValue] | None = None,
        **kw: Any,
    ) -> MemoryEntry:
        """Store an episodic entry; may turn :attr:`needs_reflection` true (never reflects)."""
        return self.base.add(content, importance=importance, metadata=metadata, **kw)

    def _prompt(self, sources: list[MemoryEntry]) -> str:
        lines = [
            f"{n}. [importance {entry.importance:.2f}] {entry.content}"
            for n, entry in enumerate(sources, 1)
        ]
        return (
            f"Here are {len(sources)} memories of namespace {self.namespace!r}, oldest first:\n"
            + "\n".join(lines)
            + "\n\nWrite the few most useful high-level insights these memories support. "
            "Write one insight per line, with no preamble and no commentary."
        )

    async def _complete(self, prompt: str) -> str:
        if self.complete_fn is not None:
            if _takes_system(self.complete_fn):
                return str(await self.complete_fn(prompt, system=REFLECTION_SYSTEM))
            # a prompt-only function cannot take a system prompt: the instructions lead it
            return str(await self.complete_fn(f"{REFLECTION_SYSTEM}\n\n{prompt}"))
        if self.llm is not None:
            messages = [{"role": "user", "content": prompt}]
            reply = await self.llm.complete(messages, system=REFLECTION_SYSTEM)
            return str(reply.text)
        raise ReflectionError(
            f"{self._label}.reflect() has no LLM: create the memory with llm=<object with "
            "async complete()> or complete_fn=<async prompt -> text>",
            code="FSM401",
        )

    async def reflect(self) -> list[MemoryEntry]:
        """Distil the pending entries into reflection entries; returns them.

        Awaited explicitly (see the class docstring); does nothing and calls no LLM when no
        entry is pending. In buffered mode the reflections go to the buffer like any write.
        Raises :class:`ReflectionError` when the reply holds no insight line.
        """
        base, slots = self._pending_slots()
        if not slots:
            return []
        watermark = int(base.seq[slots].max())
        sources = [
            e
            for e in self.base._entries(base, np.array(slots[-self.max_sources :], dtype=int))
            if e
        ]
        reply = await self._complete(self._prompt(sources))
        insights = parse_insights(reply)
        if not insights:
            raise ReflectionError(
                f"{self._label}.reflect(): the LLM reply has no insight lines "
                f"({reply[:200]!r}); it must answer with one insight per line",
                code="FSM402",
            )
        vectors = self._embed(insights)
        now = self.clock()
        source_ids: list[JsonValue] = [entry.id for entry in sources]
        entries = [
            self._new_entry(
                insight,
                importance=self.insight_importance,
                metadata={"sources": source_ids},
                timestamp=now,
            )
            for insight in insights
        ]
        # seq just above the newest reflected entry: it is the watermark that tells which
        # entries are still pending, and entries added during the LLM call stay above it.
        ops = [
            self._upsert(entry, vector, seq=watermark + 1)
            for entry, vector in zip(entries, vectors, strict=True)
        ]
        self._commit(lambda: ops)
        return entries

    def clear(self) -> None:
        """Delete the reflections and the base entries of this namespace."""
        self._commit(
            lambda: [
                ClearOp(namespace=self.namespace, kind=self.kind),
                ClearOp(namespace=self.namespace, kind=self.base.kind),
            ]
        )

    # -- reading --------------------------------------------------------------------------

    def reflections(self) -> list[MemoryEntry]:
        """The reflection entries only, oldest first."""
        return super().inspect()

    def inspect(self) -> list[MemoryEntry]:
        """Base entries and reflections, oldest first."""
        both = self.base.inspect() + self.reflections()
        return sorted(both, key=lambda entry: entry.timestamp)

    def retrieve(self, query: str, k: int = 5) -> list[ScoredEntry]:
        """Reflections and base entries most similar to ``query``, mixed (see the class)."""
        check_k(k, self._label)
        reflections = self._similar(query, k)
        base = self.base.retrieve(query, k)
        take_reflections = min(len(reflections), math.ceil(k * self.reflection_share))
        take_base = min(len(base), k - take_reflections)
        take_reflections = min(len(reflections), k - take_base)
        mixed = reflections[:take_reflections] + base[:take_base]
        return sorted(mixed, key=lambda s: (-s.score, -s.entry.timestamp))

    def _sources(self) -> list[tuple[Snapshot, Embedder]]:
        return super()._sources() + self.base._sources()
