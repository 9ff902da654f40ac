"""The lineage index schema (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Keys are time-ordered (output IDs and event IDs derive from UUIDv7), so inserts append to the right edge of
each B-tree. Small tables keyed by text are WITHOUT ROWID on SQLite: one B-tree per table instead of a rowid
tree plus a primary-key index. Outputs carry their bundle, prompt and model keys as columns; only many-to-many relations
(documents, parent outputs, consumers) are rows in `edges`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

ID = String(64)
KEY = String(512)

outputs = Table(
    "outputs",
    metadata,
    Column("output_id", ID, primary_key=True),
    Column("event_id", String(36), nullable=False),  # 1:1 with output_id, which is the key
    Column("occurred_at", BigInteger, nullable=False),  # Unix µs, UTC
    Column("tenant", String(128), nullable=False),
    Column("feature", String(256), nullable=False),
    Column("trace_id", String(128)),
    Column("bundle_id", ID),
    Column("prompt_key", KEY, nullable=False),
    Column("model_key", KEY, nullable=False),
    Column("model_served", String(256), nullable=False),
    Column("model_requested", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("cost_usd_micros", BigInteger, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("rollout_arm", String(32)),
    Column("retention_class", String(64), nullable=False),
    Column("pii", Boolean, nullable=False),
    Column("log_partition", Integer, nullable=False),
    Column("log_offset", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),  # the event exactly as stored in the log
    Index("ix_outputs_feature", "feature", "output_id"),
    Index("ix_outputs_bundle", "bundle_id", "output_id"),
    Index("ix_outputs_model", "model_served", "output_id"),
    Index("ix_outputs_model_requested", "model_requested", "output_id"),
    Index("ix_outputs_status", "status", "output_id"),
    Index("ix_outputs_occurred", "occurred_at"),
    Index("ix_outputs_trace", "trace_id"),
    Index("ix_outputs_log_position", "log_partition", "log_offset"),  # lineage verify reads copies in log order
)

bundles = Table(
    "bundles",
    metadata,
    Column("bundle_id", ID, primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("registered_at", BigInteger, nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("version", String(128), nullable=False),
    Column("prompt_template_id", String(256), nullable=False),
    Column("prompt_template_version", String(128), nullable=False),
    Column("prompt_template_sha256", String(64), nullable=False),
    Column("model_provider", String(128), nullable=False),
    Column("model_name", String(256), nullable=False),
    Column("retrieval_config_id", String(256)),
    Column("retrieval_config_sha256", String(64)),
    Column("params_json", Text, nullable=False),
    Column("canonical_json", Text, nullable=False),
    Column("registered_by", String(256)),
)

prompts = Table(
    "prompts",
    metadata,
    Column("prompt_key", KEY, primary_key=True),
    Column("template_id", String(256), nullable=False),
    Column("template_version", String(128), nullable=False),
    Column("template_sha256", String(64), nullable=False),
    Column("first_seen", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

documents = Table(
    "documents",
    metadata,
    Column("document_key", KEY, primary_key=True),
    Column("doc_id", String(512), nullable=False),
    Column("version", String(128), nullable=False),
    Column("source", String(256), nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("first_seen", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

models = Table(
    "models",
    metadata,
    Column("model_key", KEY, primary_key=True),
    Column("provider", String(128), nullable=False),
    Column("served", String(256), nullable=False),
    Column("fingerprint", String(256)),
    Column("first_seen", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

consumers = Table(
    "consumers",
    metadata,
    Column("consumer", String(256), primary_key=True),
    Column("first_seen", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

consumptions = Table(
    "consumptions",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("output_id", ID, nullable=False),
    Column("consumer", String(256), nullable=False),
    Column("consumer_ref", String(512)),
    Column("purpose", String(512)),
    Column("occurred_at", BigInteger, nullable=False),
    Index("ix_consumptions_output", "output_id"),
)

# src -> dst means "src went into dst": document:… -> output:…, output:parent -> output:child,
# output:… -> consumer:…
edges = Table(
    "edges",
    metadata,
    Column("src", KEY, primary_key=True),
    Column("dst", KEY, primary_key=True),
    Column("kind", String(32), nullable=False),
    Index("ix_edges_dst", "dst", "src"),
    sqlite_with_rowid=False,
)

aliases = Table(
    "alias_moves",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("occurred_at", BigInteger, nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("feature", String(256), nullable=False),
    Column("alias", String(128), nullable=False),
    Column("bundle_id", ID, nullable=False),
    Column("previous_bundle_id", ID),
    Column("weight", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("approver", String(256)),
    Column("evaluation_ref", String(256)),
    Index("ix_alias_moves_feature", "feature", "alias", "occurred_at"),
)

positions = Table(
    "consumer_positions",
    metadata,
    Column("projector", String(128), primary_key=True),
    Column("log_partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("log_partition", Integer, primary_key=True),
    Column("log_offset", BigInteger, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("recorded_at", BigInteger, nullable=False),
)

# -- the integrity chain: an RFC 6962 Merkle tree per log partition over every record's exact bytes --------

# Leaf i of a partition's tree is the i-th record of that partition (dead letters included). The leaf hash
# stays when a body is later purged or erased, so proofs keep verifying.
merkle_leaves = Table(
    "merkle_leaves",
    metadata,
    Column("log_partition", Integer, primary_key=True),
    Column("leaf_index", BigInteger, primary_key=True),
    Column("log_offset", BigInteger, nullable=False),
    Column("leaf_hash", LargeBinary, nullable=False),
    Index("ix_merkle_leaves_offset", "log_partition", "log_offset", unique=True),
    sqlite_with_rowid=False,
)

# Roots of complete subtrees (level >= 1; index i at level L covers leaves [i * 2^L, (i + 1) * 2^L)),
# so proofs are lookups instead of rehashing the partition.
merkle_nodes = Table(
    "merkle_nodes",
    metadata,
    Column("log_partition", Integer, primary_key=True),
    Column("level", Integer, primary_key=True),
    Column("node_index", BigInteger, primary_key=True),
    Column("node_hash", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

chain_heads = Table(
    "chain_heads",
    metadata,
    Column("log_partition", Integer, primary_key=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("next_offset", BigInteger, nullable=False),  # records below it are leaves already
    Column("frontier", LargeBinary, nullable=False),  # streams.merkle.CompactRange bytes
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("log_partition", Integer, primary_key=True),
    Column("tree_size", BigInteger, primary_key=True),
    Column("root_hash", String(64), nullable=False),
    Column("first_offset", BigInteger, nullable=False),
    Column("last_offset", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("signed_body", Text, nullable=False),
    Column("signature", String(128), nullable=False),
)
