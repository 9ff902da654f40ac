"""baseline: the index schema as it stood when migrations were introduced

Frozen: it spells out every table instead of reading streams/tables.py, so it creates the same schema however
tables.py changes later. `TABLES` and `INDEXES` also let streams.migrate adopt a store made before migrations
existed: it checks the tables are there, adds missing indexes, and stamps the store at this revision.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = (
    "outputs", "bundles", "prompts", "documents", "models", "consumers", "consumptions", "edges", "alias_moves",
    "consumer_positions", "dead_letters", "merkle_leaves", "merkle_nodes", "chain_heads", "checkpoints",
)

# (table, index, columns, unique)
INDEXES = (
    ("outputs", "ix_outputs_feature", ("feature", "output_id"), False),
    ("outputs", "ix_outputs_bundle", ("bundle_id", "output_id"), False),
    ("outputs", "ix_outputs_model", ("model_served", "output_id"), False),
    ("outputs", "ix_outputs_model_requested", ("model_requested", "output_id"), False),
    ("outputs", "ix_outputs_status", ("status", "output_id"), False),
    ("outputs", "ix_outputs_occurred", ("occurred_at",), False),
    ("outputs", "ix_outputs_trace", ("trace_id",), False),
    ("outputs", "ix_outputs_log_position", ("log_partition", "log_offset"), False),
    ("consumptions", "ix_consumptions_output", ("output_id",), False),
    ("edges", "ix_edges_dst", ("dst", "src"), False),
    ("alias_moves", "ix_alias_moves_feature", ("feature", "alias", "occurred_at"), False),
    ("merkle_leaves", "ix_merkle_leaves_offset", ("log_partition", "log_offset"), True),
)


def upgrade() -> None:
    _create_lineage_tables()
    _create_chain_tables()
    for table, name, columns, unique in INDEXES:
        op.create_index(name, table, list(columns), unique=unique)


def downgrade() -> None:
    for table, name, _columns, _unique in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    for table in reversed(TABLES):
        op.drop_table(table)


def _create_lineage_tables() -> None:
    op.create_table(
        "outputs",
        sa.Column("output_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("feature", sa.String(256), nullable=False),
        sa.Column("trace_id", sa.String(128), nullable=True),
        sa.Column("bundle_id", sa.String(64), nullable=True),
        sa.Column("prompt_key", sa.String(512), nullable=False),
        sa.Column("model_key", sa.String(512), nullable=False),
        sa.Column("model_served", sa.String(256), nullable=False),
        sa.Column("model_requested", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cost_usd_micros", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("rollout_arm", sa.String(32), nullable=True),
        sa.Column("retention_class", sa.String(64), nullable=False),
        sa.Column("pii", sa.Boolean(), nullable=False),
        sa.Column("log_partition", sa.Integer(), nullable=False),
        sa.Column("log_offset", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("output_id"),
    )
    op.create_table(
        "bundles",
        sa.Column("bundle_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("prompt_template_id", sa.String(256), nullable=False),
        sa.Column("prompt_template_version", sa.String(128), nullable=False),
        sa.Column("prompt_template_sha256", sa.String(64), nullable=False),
        sa.Column("model_provider", sa.String(128), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("retrieval_config_id", sa.String(256), nullable=True),
        sa.Column("retrieval_config_sha256", sa.String(64), nullable=True),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("canonical_json", sa.Text(), nullable=False),
        sa.Column("registered_by", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("bundle_id"),
    )
    op.create_table(
        "prompts",
        sa.Column("prompt_key", sa.String(512), nullable=False),
        sa.Column("template_id", sa.String(256), nullable=False),
        sa.Column("template_version", sa.String(128), nullable=False),
        sa.Column("template_sha256", sa.String(64), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("prompt_key"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "documents",
        sa.Column("document_key", sa.String(512), nullable=False),
        sa.Column("doc_id", sa.String(512), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("document_key"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "models",
        sa.Column("model_key", sa.String(512), nullable=False),
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("served", sa.String(256), nullable=False),
        sa.Column("fingerprint", sa.String(256), nullable=True),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model_key"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "consumers",
        sa.Column("consumer", sa.String(256), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("consumer"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "consumptions",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("output_id", sa.String(64), nullable=False),
        sa.Column("consumer", sa.String(256), nullable=False),
        sa.Column("consumer_ref", sa.String(512), nullable=True),
        sa.Column("purpose", sa.String(512), nullable=True),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_table(
        "edges",
        sa.Column("src", sa.String(512), nullable=False),
        sa.Column("dst", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("src", "dst"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "alias_moves",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("feature", sa.String(256), nullable=False),
        sa.Column("alias", sa.String(128), nullable=False),
        sa.Column("bundle_id", sa.String(64), nullable=False),
        sa.Column("previous_bundle_id", sa.String(64), nullable=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("approver", sa.String(256), nullable=True),
        sa.Column("evaluation_ref", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_table(
        "consumer_positions",
        sa.Column("projector", sa.String(128), nullable=False),
        sa.Column("log_partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("projector", "log_partition"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("log_partition", sa.Integer(), nullable=False),
        sa.Column("log_offset", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("log_partition", "log_offset"),
    )


def _create_chain_tables() -> None:
    op.create_table(
        "merkle_leaves",
        sa.Column("log_partition", sa.Integer(), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.Column("log_offset", sa.BigInteger(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("log_partition", "leaf_index"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "merkle_nodes",
        sa.Column("log_partition", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("node_index", sa.BigInteger(), nullable=False),
        sa.Column("node_hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("log_partition", "level", "node_index"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "chain_heads",
        sa.Column("log_partition", sa.Integer(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("log_partition"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("log_partition", sa.Integer(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("first_offset", sa.BigInteger(), nullable=False),
        sa.Column("last_offset", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signed_body", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("log_partition", "tree_size"),
    )
