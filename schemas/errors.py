"""The one error tree of llm-lineage. Every module raises these; the API maps them to HTTP statuses in one place.

    LineageError
    ├── ConfigError                    bad setting or unsupported URL scheme
    ├── NotFoundError                  an ID that is not in the index (HTTP 404)
    ├── InvalidRequestError            a query the API cannot answer as asked (HTTP 400)
    ├── EventError                     something is wrong with one event
    │   ├── SerializationError         a value cannot be encoded to Avro (names the field)
    │   ├── DeserializationError       bytes cannot be decoded into an event
    │   │   ├── MalformedEventError    bad framing, truncated or corrupt Avro, non-UTF-8 text
    │   │   └── UnknownSchemaError     schema ID not in the registry
    │   ├── EventValidationError       decodes/parses but breaks a rule (missing field, wrong type)
    │   └── EventTooLargeError         over the configured size limit (HTTP 413)
    │       └── RequestTooLargeError   a request body over its limit (8 x the event limit)
    ├── LogError                       the event log cannot be used
    │   └── LogUnavailableError        transient: the SDK spools and retries
    ├── IndexError_                    the lineage index cannot be used (transient: retried)
    │   └── IndexRejectedError         the index refused a row (constraint, bad data): not retried as is
    ├── ArchiveError                   the archive store refused an object (e.g. its checksum did not match)
    │   └── ArchiveUnavailableError    the archive cannot be reached or used: endpoint, credentials, bucket
    └── RecorderError                  the SDK cannot accept or deliver records
        ├── RecorderClosedError
        ├── RecorderOverloadedError    the bounded queue stayed full past the block timeout
        └── RecordsRejectedError       records the background writer could not encode
"""

from __future__ import annotations


class LineageError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(LineageError):
    pass


class NotFoundError(LineageError):
    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} not found")
        self.kind = kind
        self.ident = ident


class InvalidRequestError(LineageError):
    pass


class EventError(LineageError):
    pass


class SerializationError(EventError):
    pass


class DeserializationError(EventError):
    pass


class MalformedEventError(DeserializationError):
    pass


class UnknownSchemaError(DeserializationError):
    def __init__(self, schema_id: int) -> None:
        super().__init__(f"unknown schema id {schema_id}: not in the schema registry")
        self.schema_id = schema_id


class EventValidationError(EventError):
    pass


class EventTooLargeError(EventError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"event is {size} bytes, over the limit of {limit} bytes (LINEAGE_MAX_EVENT_BYTES)")
        self.size = size
        self.limit = limit


class RequestTooLargeError(EventTooLargeError):
    def __init__(self, size: int, limit: int) -> None:
        EventError.__init__(self, f"request body of {size} bytes or more is over the limit of {limit} bytes "
                                  "(8 x LINEAGE_MAX_EVENT_BYTES); send fewer events per request")
        self.size = size
        self.limit = limit


class LogError(LineageError):
    pass


class LogUnavailableError(LogError):
    """The log cannot be written right now; retrying later may succeed."""


class LogPartlyWrittenError(LogUnavailableError):
    """Some records of an append were stored and some not (a networked log fails record by record):
    `undelivered` holds the (key, value) records that must be written again, in their original order."""

    def __init__(self, message: str, undelivered: list[tuple[bytes | None, bytes]]) -> None:
        super().__init__(message)
        self.undelivered = undelivered


class IndexError_(LineageError):  # trailing underscore: do not shadow the builtin IndexError
    pass


class StalePositionError(IndexError_):
    """Another consumer moved a partition's position since this one read it (a rebalance handed the
    partition over): the batch was not applied and must be prepared again from the stored position."""

    def __init__(self, partition: int, expected: int, found: int) -> None:
        super().__init__(f"partition {partition}: position is {found}, not {expected} as this consumer read it; "
                         "another consumer applied records meanwhile")
        self.partition, self.expected, self.found = partition, expected, found


class IndexRejectedError(IndexError_):
    pass


class ArchiveError(LineageError):
    pass


class ArchiveUnavailableError(ArchiveError):
    """The archive store cannot be used right now; the message names the bucket and endpoint to check."""

    def __init__(self, bucket: str, endpoint: str, reason: str) -> None:
        super().__init__(f"archive bucket {bucket!r} at {endpoint} is unavailable: {reason}")
        self.bucket = bucket
        self.endpoint = endpoint


class RecorderError(LineageError):
    pass


class RecorderClosedError(RecorderError):
    pass


class RecorderOverloadedError(RecorderError):
    pass


class RecordsRejectedError(RecorderError):
    def __init__(self, problems: list[str]) -> None:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        super().__init__(f"{len(problems)} record(s) could not be encoded and were not recorded: {shown}")
        self.problems = problems
