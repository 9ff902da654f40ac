"""The SDK an LLM app calls to record its requests, and the transports to the event log."""

from producers.log import EventLog, LogRecord, ReadableEventLog, open_log
from producers.recorder import Recorder
from producers.values import (
    Attempt,
    Bundle,
    Classification,
    Document,
    Message,
    ModelCall,
    Output,
    Params,
    Prompt,
    PromptTemplate,
    Retrieval,
    RetrievalConfig,
    Rollout,
    Usage,
)

__all__ = [
    "Attempt", "Bundle", "Classification", "Document", "EventLog", "LogRecord", "Message", "ModelCall",
    "Output", "Params", "Prompt", "PromptTemplate", "ReadableEventLog", "Recorder", "Retrieval",
    "RetrievalConfig", "Rollout", "Usage", "open_log",
]
