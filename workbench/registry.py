"""The one list of each stage's kinds: name -> "module:Class", imported on first use.

Config validation, the app's choices, CLI help and error messages read these registries, and
each stage package builds its components from them, `Class.from_config(config, resources)`.
The targets are strings so that this table sits below the stages (config, floor 2, reads it;
the stages, floor 3, are only imported when a kind is built) and `import workbench` stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from .validation import ConfigError, shorten

__all__ = ["Registry", "REGISTRIES", "registry", "register", "unregister", "choices"]


class Registry(Mapping[str, Any]):
    """One config field's kinds: a read-only mapping of name -> the component class.

    `extra` names kinds that build nothing (e.g. reranking "none"): valid in a config, listed
    in `choices`, but not keys of the mapping. `embedding` names the kinds that embed text,
    so a runner knows to load an embedder without importing the stage.
    """

    def __init__(self, field: str, targets: Mapping[str, str], extra: tuple[str, ...] = (),
                 embedding: frozenset[str] = frozenset()) -> None:
        self.field = field
        self._targets = dict(targets)
        self.extra = extra
        self.embedding = embedding
        self._resolved: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._resolved:
            module, _, qualname = self._targets[name].partition(":")
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
            self._resolved[name] = target
        return self._resolved[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __repr__(self) -> str:
        return f"Registry({self.field!r}, {sorted(self._targets)})"

    def choices(self) -> tuple[str, ...]:
        """Every valid value of the field, sorted."""
        return tuple(sorted([*self._targets, *self.extra]))

    def check(self, name: Any, label: str = "") -> None:
        """Raise `ConfigError` ("unknown <label or field> ...") listing every choice unless `name` is one."""
        if name not in self._targets and name not in self.extra:
            raise ConfigError(f"unknown {label or self.field} {shorten(name)}; choose one of {list(self.choices())}")

    def embeds(self, name: str) -> bool:
        """Whether kind `name` embeds text (needs the pipeline's embedder)."""
        return name in self.embedding

    def target(self, name: str) -> str:
        """The "module:Class" string a kind is built from."""
        return self._targets[name]

    def add(self, name: str, target: str, *, embeds: bool = False) -> None:
        """Register kind `name` as "module:Class" (a class with `from_config(config, resources)`);
        `embeds`: it needs the pipeline's embedder."""
        if ":" not in target:
            raise ValueError(f"register {self.field}={name!r} as 'package.module:Class', got {shorten(target)}")
        self._targets[name] = target
        self._resolved.pop(name, None)
        self.embedding = self.embedding | {name} if embeds else self.embedding - {name}

    def remove(self, name: str) -> None:
        """Forget kind `name` (one `add` made); configs naming it no longer load."""
        del self._targets[name]
        self._resolved.pop(name, None)
        self.embedding = self.embedding - {name}


REGISTRIES: dict[str, Registry] = {
    r.field: r
    for r in (
        Registry("chunking.method", {
            "none": "workbench.chunking:WholeDocumentChunker",
            "fixed": "workbench.chunking:FixedTokenChunker",
            "recursive": "workbench.chunking:RecursiveChunker",
            "semantic": "workbench.chunking:SemanticChunker",
        }, embedding=frozenset({"semantic"})),
        Registry("retrieval.kind", {
            "bm25": "workbench.retrieval.bm25:BM25Retriever",
            "dense": "workbench.retrieval.dense:DenseRetriever",
            "hybrid": "workbench.retrieval.hybrid:HybridRetriever",
        }, embedding=frozenset({"dense", "hybrid"})),
        Registry("retrieval.backend", {
            "faiss": "workbench.vectorstores.faiss:FaissIndex",
            "pgvector": "workbench.vectorstores.pgvector:PgvectorIndex",
            "chroma": "workbench.vectorstores.chroma:ChromaIndex",
            "lancedb": "workbench.vectorstores.lance:LanceIndex",
            "milvus": "workbench.vectorstores.milvus:MilvusIndex",
            "qdrant": "workbench.vectorstores.qdrant:QdrantIndex",
        }),
        Registry("reranking.kind", {
            "cross-encoder": "workbench.reranking.cross_encoder:CrossEncoderReranker",
            "trained": "workbench.reranking.cross_encoder:CrossEncoderReranker",
            "maxsim": "workbench.reranking.maxsim:MaxSimReranker",
            "mmr": "workbench.reranking.mmr:MMRReranker",
            "llm": "workbench.reranking.llm:LLMReranker",
        }, extra=("none",), embedding=frozenset({"maxsim", "mmr"})),
        Registry("routing.kind", {
            "fixed": "workbench.routing.routers:FixedRouter",
            "rules": "workbench.routing.routers:RulesRouter",
            "learned": "workbench.routing.learned:LearnedRouter",
            "retrieval": "workbench.routing.learned:RetrievalRouter",
            "cascade": "workbench.routing.routers:CascadeRouter",
        }),
        Registry("generation.kind", {
            "extractive": "workbench.generation.offline:ExtractiveGenerator",
            "local": "workbench.generation.offline:LocalGenerator",
            "anthropic": "workbench.generation.claude:AnthropicGenerator",
        }),
    )
}


def registry(field: str) -> Registry:
    """The registry of config field `field` (e.g. "retrieval.kind").

    Raises:
        KeyError: no registry for that field (the message lists the ones there are).
    """
    try:
        return REGISTRIES[field]
    except KeyError:
        raise KeyError(f"no registry for {field!r}; registries: {sorted(REGISTRIES)}") from None


def register(field: str, name: str, target: str, *, embeds: bool = False) -> None:
    """Add a kind, e.g. `register("reranking.kind", "mine", "my_package.rerank:MyReranker")`.

    The class needs `from_config(config, resources)`; configs naming `name` then load.
    `embeds`: the kind needs the pipeline's embedder (`experiment.needs_embedder` reads it).
    """
    registry(field).add(name, target, embeds=embeds)


def unregister(field: str, name: str) -> None:
    """Remove a kind `register` added."""
    registry(field).remove(name)


def choices(field: str) -> tuple[str, ...]:
    """The kinds config field `field` accepts, sorted."""
    return registry(field).choices()
