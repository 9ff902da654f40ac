"""What an app hands the Recorder about one LLM call. Plain frozen values; hashing and encoding happen
later on the background writer, so building these on the caller's thread stays cheap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.hashing import sha256_hex

Status = Literal["OK", "ERROR", "REFUSED", "TIMEOUT"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    role: str
    content: str
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptTemplate:
    """A versioned template; its sha256 is over the exact text."""

    template_id: str
    version: str
    text: str

    @property
    def sha256(self) -> str:
        return sha256_hex(self.text)

    def render(self, role: str = "user", system: str | None = None, **variables: Any) -> Prompt:
        """Fill the template with str.format and return the prompt as it will be sent."""
        messages = [Message(role="system", content=system)] if system else []
        messages.append(Message(role=role, content=self.text.format(**variables)))
        return Prompt(
            template_id=self.template_id,
            template_version=self.version,
            template_sha256=self.sha256,
            variables=variables,
            messages=tuple(messages),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    """The prompt as sent: template identity, the variables, and the exact rendered messages."""

    template_id: str
    messages: Sequence[Message]
    template_version: str = ""
    template_sha256: str = ""
    variables: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """One retrieved document. content_sha256 is computed from content when not given."""

    doc_id: str
    version: str = ""
    source: str = ""
    content: str | None = None
    content_sha256: str | None = None
    score: float | None = None
    keep_content: bool = True  # False records only the hash (content too large or not to be kept)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retrieval:
    config_id: str
    documents: Sequence[Document] = ()
    config_sha256: str = ""
    query: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCall:
    provider: str
    requested: str
    served: str = ""
    fingerprint: str | None = None
    endpoint: str | None = None
    region: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Params:
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: Sequence[str] = ()
    response_format: str | None = None
    tool_schemas_sha256: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    text: str | None = None
    structured: Any = None  # any JSON value; stored as canonical JSON
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One try in the provider fallback chain."""

    provider: str
    model: str
    status: Status
    error: str | None = None
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    arm: str = "stable"  # stable | canary
    alias: str | None = None
    weight: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Classification:
    retention_class: str = "standard"
    pii: bool = False
    subject_ids: Sequence[str] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrievalConfig:
    """How documents are found for a bundle (index, top-k, filters); hashed as canonical JSON."""

    config_id: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """A registered release. bundle_id is the sha256 of its canonical content, so equal content, equal ID."""

    bundle_id: str
    name: str
    version: str
