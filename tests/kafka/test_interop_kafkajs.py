"""A stock Kafka client written by others decodes our topic with the schema our API serves.

The SDK records a day of a grid-forecasting assistant into the tansu broker with its production producer
settings: InferenceRecorded events with documents, a chain parent, structured output, unicode text, a 64-bit
seed and a failed call with its fallback chain; a BundleRegistered; an OutputConsumed. tests/interop/consume.mjs
(kafkajs with @kafkajs/confluent-schema-registry, pinned in package-lock.json) reads the topic from the
beginning in a consumer group of its own and decodes each message with the writer schema it fetches by ID
from our API. Every event is checked by event_id, field for field, against our codec's reading of the bytes
the SDK appended, and against the values the test handed the SDK.

What a kafkajs consumer of our topic needs, found here:
- from the registry, only `GET /schemas/ids/{id}` (an answer without `schemaType` is taken as Avro);
- a zstd codec: our producer compresses with zstd and kafkajs ships GZIP only, so a bare kafkajs consumer
  crashes on its first Fetch with "KafkaJSNotImplemented: ZSTD compression not implemented";
- longs as BigInt: avsc refuses longs beyond 2^53 ("potential precision loss").
It needs nothing special from tansu: ApiVersions v2, Metadata v6, FindCoordinator v2, JoinGroup v5, SyncGroup
v3, OffsetFetch v4, ListOffsets v3, Fetch v11, Heartbeat v3 and LeaveGroup v3 all succeed; the broker holds
the second JoinGroup about 3 s before it answers, which is most of this test's time.

The events go to a topic of this test's own, as the other Kafka tests share the broker. The test runs `npm ci`
into tests/interop/node_modules when the pinned packages are missing there; without Node.js, npm or the npm
registry it skips, and fails under --require-services.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lineage_api.app import create_app
from lineage_api.services import open_services
from lineage_api.settings import Settings
from producers.kafka_log import ensure_topics, recommended_topics
from producers.log import EventLog, open_log
from producers.recorder import Recorder
from producers.values import (
    Attempt,
    Bundle,
    Classification,
    Document,
    ModelCall,
    Output,
    Params,
    PromptTemplate,
    Retrieval,
    RetrievalConfig,
    Rollout,
    Usage,
)
from schemas.codec import Codec
from schemas.hashing import canonical_json, sha256_hex
from schemas.ids import output_id_from
from schemas.registry import TOPIC
from schemas.times import to_micros
from tests.brokers import TansuBroker
from tests.conftest import service_missing
from tests.servers import serve_app

pytestmark = pytest.mark.kafka

INTEROP = Path(__file__).resolve().parents[1] / "interop"
NPM_CI_SECONDS = 180.0
CONSUME_SECONDS = 60.0
MAX_SAFE_INTEGER = 2**53 - 1  # JavaScript's; consume.mjs prints longs beyond it as strings
_MISSING = object()

BASE = datetime(2026, 12, 3, 6, 0, 0, 123456, tzinfo=UTC)
TEMPLATE = PromptTemplate(template_id="grid.day_ahead_load", version="4",
                          text="Forecast tomorrow's load for {region}.\n{context}")
MODEL = ModelCall(provider="northwind-ai", requested="gridcast-large")
PARAMS = Params(temperature=0.2, top_p=0.9, seed=20261101, max_tokens=1200, stop=("END", "\n\n"),
                response_format="json_object", tool_schemas_sha256=sha256_hex("[]"),
                extras={"reasoning": {"effort": "low"}, "region_hint": "côte"})


# -- Node.js and the pinned packages ------------------------------------------------------------------------


def _installed() -> bool:
    """Every dependency of package.json is in node_modules at its pinned version."""
    wanted: dict[str, str] = json.loads((INTEROP / "package.json").read_text())["dependencies"]
    for name, version in wanted.items():
        manifest = INTEROP / "node_modules" / name / "package.json"
        if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
            return False
    return True


@pytest.fixture(scope="module")
def node(pytestconfig: pytest.Config) -> str:
    """The node binary, with tests/interop/node_modules installed from package-lock.json."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if node_bin is None or npm_bin is None:
        service_missing(pytestconfig, "Node.js >= 20 and npm (for the kafkajs interop test)")
    assert node_bin is not None and npm_bin is not None
    version = subprocess.run([node_bin, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        service_missing(pytestconfig, f"Node.js >= 20 (found {version})")
    with open(INTEROP / "package-lock.json", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run in this checkout may be installing right now
        if not _installed():
            _npm_ci(pytestconfig, npm_bin)
    return node_bin


def _npm_ci(config: pytest.Config, npm_bin: str) -> None:
    env = dict(os.environ, npm_config_update_notifier="false")
    argv = [npm_bin, "ci", "--ignore-scripts", "--no-audit", "--no-fund"]  # no dependency needs its scripts
    try:
        done = subprocess.run(argv, cwd=INTEROP, capture_output=True, text=True, env=env, timeout=NPM_CI_SECONDS)
    except subprocess.TimeoutExpired:
        service_missing(config, f"the npm registry (`npm ci` in {INTEROP} took over {NPM_CI_SECONDS:.0f} s)")
        return
    if done.returncode != 0 or not _installed():
        service_missing(config, f"the npm registry (`npm ci` in {INTEROP} exited {done.returncode}: "
                                f"{(done.stderr or done.stdout)[-1500:]})")


@pytest.fixture(scope="module")
def registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Our API over an embedded store: its schema routes serve the committed registry."""
    services = open_services(Settings(data_dir=tmp_path_factory.mktemp("interop-api")))
    with serve_app(create_app(services, run_projectors=False)) as url:
        yield url


# -- what the SDK records ----------------------------------------------------------------------------------


class TappedLog:
    """The Kafka log, keeping a copy of what it appended: the exact (key, value) records now on the topic."""

    def __init__(self, inner: EventLog) -> None:
        self.inner = inner
        self.appended: list[tuple[bytes | None, bytes]] = []

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        self.inner.append(records)
        self.appended.extend(records)

    def close(self) -> None:
        self.inner.close()


def _forecast(region: str, hour: int, docs: Sequence[Document], **fields: Any) -> dict[str, Any]:
    """The arguments of one record() call for a regional forecast; `fields` override them."""
    call: dict[str, Any] = {
        "feature": "day-ahead-load", "occurred_at": BASE + timedelta(hours=hour, microseconds=hour),
        "prompt": TEMPLATE.render(region=region, context=docs[0].content, system="You forecast grid load."),
        "retrieval": Retrieval(config_id="grid-context", config_sha256=sha256_hex("top_k=5"),
                               query=f"{region} load 2026-12-04", documents=docs),
        "model": ModelCall(provider="northwind-ai", requested="gridcast-large", served="gridcast-large-2026-11",
                           fingerprint="fp_b43d0f17e2", endpoint="https://api.northwind.example/v1", region="eu-west"),
        "params": PARAMS, "usage": Usage(prompt_tokens=812 + hour, completion_tokens=164, cached_tokens=512),
        "cost_usd_micros": 2450 + hour, "latency_ms": 2310.25 + hour,
        "rollout": Rollout(arm="canary", alias="canary", weight=0.1),
        "classification": Classification(retention_class="operational-7y", pii=True, subject_ids=("eng-17",)),
    }
    return call | fields


def record_day(rec: Recorder) -> tuple[Bundle, dict[str, dict[str, Any]], dict[str, Any]]:
    """Records the scenario; returns the bundle, record() arguments by output ID, and the consumed() call."""
    bundle = rec.register_bundle(name="grid-forecast", version="2026.11.2", prompt=TEMPLATE, model=MODEL,
                                 retrieval=RetrievalConfig(config_id="grid-context", settings={"top_k": 5}),
                                 params=PARAMS, registered_by="release-bot", occurred_at=BASE)
    weather = Document(doc_id="weather/coastal/2026-12-04", version="run-00Z", source="met-service",
                       content="min 3.1 °C, max 9.4 °C, wind 40 km/h SW — Sturmböen möglich", score=0.93)
    scada = Document(doc_id="scada/coastal/load-7d", version="v7", source="scada",
                     content_sha256=sha256_hex("7 days of 15-minute load"), score=0.5, keep_content=False)
    north = Document(doc_id="weather/北部/2026-12-04", version="run-06Z", source="met-service",
                     content="雪 −4 °C ❄ 風速 12 m/s", score=0.71)
    calls = [
        _forecast("coastal", 1, (weather, scada), bundle=bundle, trace_id="trace-2026-12-04-coastal",
                  output=Output(text="Peak 1,284 MW at 18:00 ⚡", finish_reason="stop",
                                structured={"peak_mw": 1284, "peak_at": "18:00", "hourly_mw": [910.5, 1284],
                                            "note": "Pic à 18 h ±2 %"})),
        _forecast("北部", 2, (north,), bundle=bundle, params=Params(seed=2**63 - 1, temperature=0.0),
                  output=Output(text="ピーク 2,050 MW（17:30）", structured=[2050, None, True],
                                finish_reason="stop")),
        _forecast("east", 3, (weather,), bundle=bundle, status="ERROR", latency_ms=30012.5,
                  output=Output(), error=("ProviderUnavailableError", "all providers failed: eastgate 503"),
                  attempts=(Attempt(provider="northwind-ai", model="gridcast-large", status="TIMEOUT",
                                    error="ReadTimeout after 30 s", latency_ms=30000.0),
                            Attempt(provider="eastgate", model="eg-2", status="ERROR", error="HTTP 503",
                                    latency_ms=12.5))),
    ]
    sent: dict[str, dict[str, Any]] = {}
    for call in calls:
        sent[rec.record(**call)] = call
    first, second = list(sent)[:2]
    summary: dict[str, Any] = {
        "feature": "system-summary", "occurred_at": BASE + timedelta(hours=4), "parents": (first, second),
        "trace_id": "trace-2026-12-04-coastal", "model": MODEL,
        "prompt": TEMPLATE.render(region="all regions", context="see parent forecasts"),
        "output": Output(text="System peak 3.3 GW\nno shortfall expected", structured={"peak_gw": 3.3}),
    }
    sent[rec.record(**summary)] = summary
    consumed = {"output_id": first, "consumer": "dispatch-planner", "consumer_ref": "plan-2026-12-04-06",
                "purpose": "unit commitment", "occurred_at": BASE + timedelta(hours=5)}
    rec.consumed(**consumed)
    return bundle, sent, consumed


# -- what a decoder must show ------------------------------------------------------------------------------


def as_kafkajs_json(value: Any) -> Any:
    """A value as consume.mjs prints it: times as µs, longs beyond JavaScript's safe range as strings."""
    if isinstance(value, datetime):
        value = to_micros(value)
    if isinstance(value, dict):
        return {k: as_kafkajs_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_kafkajs_json(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER:
        return str(value)
    return value


def mismatches(got: Any, want: Any, path: str = "record") -> list[str]:
    """Where `got` differs from `want`, by path; only the keys `want` has are compared."""
    if isinstance(want, dict) and isinstance(got, dict):
        return [m for k, v in want.items() for m in mismatches(got.get(k, _MISSING), v, f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        return [m for i, (g, w) in enumerate(zip(got, want, strict=True)) for m in mismatches(g, w, f"{path}[{i}]")]
    if got is _MISSING:
        return [f"{path}: missing, expected {want!r}"]
    return [] if got == want and isinstance(got, bool) == isinstance(want, bool) else [f"{path}: {got!r} != {want!r}"]


def expected_inference(output_id: str, call: dict[str, Any]) -> dict[str, Any]:
    """The InferenceRecorded fields that must come out of the arguments given to record()."""
    retrieval, bundle, params = call.get("retrieval"), call.get("bundle"), call.get("params", Params())
    usage, model, error = call.get("usage", Usage()), call["model"], call.get("error")
    rollout, classification, prompt = call.get("rollout"), call.get("classification", Classification()), call["prompt"]
    return as_kafkajs_json({
        "output_id": output_id, "trace_id": call.get("trace_id"), "parent_output_ids": list(call.get("parents", ())),
        "occurred_at": call["occurred_at"], "tenant": "default", "feature": call["feature"],
        "bundle": bundle and {"bundle_id": bundle.bundle_id, "name": bundle.name, "version": bundle.version},
        "prompt": {"template_id": prompt.template_id, "template_version": prompt.template_version,
                   "template_sha256": prompt.template_sha256,
                   "messages": [{"role": m.role, "content": m.content, "name": m.name} for m in prompt.messages]},
        "retrieval": retrieval and {
            "config_id": retrieval.config_id, "config_sha256": retrieval.config_sha256, "query": retrieval.query,
            "documents": [{"doc_id": d.doc_id, "version": d.version, "source": d.source, "score": d.score,
                           "content_sha256": d.content_sha256 or sha256_hex(d.content or ""),
                           "content": d.content if d.keep_content else None} for d in retrieval.documents]},
        "model": {"provider": model.provider, "requested": model.requested, "served": model.served or model.requested,
                  "fingerprint": model.fingerprint, "endpoint": model.endpoint, "region": model.region},
        "params": {"temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens,
                   "seed": params.seed, "stop": list(params.stop), "response_format": params.response_format,
                   "tool_schemas_sha256": params.tool_schemas_sha256},
        "output": {"text": call["output"].text, "finish_reason": call["output"].finish_reason},
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                  "cached_tokens": usage.cached_tokens},
        "cost_usd_micros": call.get("cost_usd_micros", 0), "latency_ms": call.get("latency_ms", 0.0),
        "status": call.get("status", "OK"), "error": error and {"type": error[0], "message": error[1]},
        "attempts": [{"provider": a.provider, "model": a.model, "status": a.status, "error": a.error,
                      "latency_ms": a.latency_ms} for a in call.get("attempts", ())],
        "rollout": rollout and {"arm": rollout.arm, "alias": rollout.alias, "weight": rollout.weight},
        "classification": {"retention_class": classification.retention_class, "pii": classification.pii,
                           "subject_ids": list(classification.subject_ids)},
    })


def check_inference(got: dict[str, Any], call: dict[str, Any]) -> list[str]:
    record = got["record"]
    problems = mismatches(record, expected_inference(record["output_id"], call))
    if output_id_from(uuid.UUID(record["event_id"]).bytes) != record["output_id"]:
        problems.append(f"event_id {record['event_id']} does not match output_id {record['output_id']}")
    structured = record["output"]["structured_json"]
    if (None if structured is None else json.loads(structured)) != call["output"].structured:
        problems.append(f"output.structured_json {structured!r} != {call['output'].structured!r}")
    if json.loads(record["prompt"]["variables_json"]) != call["prompt"].variables:
        problems.append(f"prompt.variables_json {record['prompt']['variables_json']!r}")
    if json.loads(record["params"]["extras_json"]) != call.get("params", Params()).extras:
        problems.append(f"params.extras_json {record['params']['extras_json']!r}")
    return problems


def check_bundle(got: dict[str, Any], bundle: Bundle) -> list[str]:
    record = got["record"]
    problems = mismatches(record, as_kafkajs_json({
        "occurred_at": BASE, "tenant": "default", "bundle_id": bundle.bundle_id, "name": bundle.name,
        "version": bundle.version, "prompt_template_id": TEMPLATE.template_id,
        "prompt_template_version": TEMPLATE.version, "prompt_template_sha256": TEMPLATE.sha256,
        "model_provider": MODEL.provider, "model_name": MODEL.requested, "retrieval_config_id": "grid-context",
        "retrieval_config_sha256": sha256_hex(canonical_json({"top_k": 5})), "registered_by": "release-bot"}))
    if hashlib.sha256(record["canonical_json"].encode()).hexdigest() != bundle.bundle_id:
        problems.append("sha256 of the decoded canonical_json is not the bundle_id")
    if json.loads(record["params_json"])["seed"] != PARAMS.seed:
        problems.append(f"params_json {record['params_json']!r} lost the seed")
    return problems


# -- the test ----------------------------------------------------------------------------------------------


def consume(node_bin: str, broker: TansuBroker, registry: str, topic: str, count: int) -> list[dict[str, Any]]:
    argv = [node_bin, str(INTEROP / "consume.mjs"), "--brokers", broker.bootstrap, "--registry", registry,
            "--topic", topic, "--count", str(count), "--timeout-ms", str(int(CONSUME_SECONDS * 1000))]
    env = dict(os.environ, KAFKAJS_LOG_LEVEL=os.environ.get("KAFKAJS_LOG_LEVEL", "WARN"))
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=CONSUME_SECONDS + 30)
    if done.returncode != 0:
        pytest.fail(f"kafkajs consumer exited {done.returncode}:\n{done.stderr[-6000:]}", pytrace=False)
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_kafkajs_decodes_the_topic_with_the_schemas_the_api_serves(
    node: str, registry_url: str, kafka_broker: TansuBroker, tmp_path: Path,
) -> None:
    topic = f"{TOPIC}.interop-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_broker.log_url, recommended_topics(topic, f"{topic}.dlq", 3, 1))
    log = TappedLog(open_log(kafka_broker.log_url, topic=topic))
    with Recorder(log, spool_dir=tmp_path / "spool") as rec:
        bundle, sent, consumed = record_day(rec)
        rec.flush(30)
        stats = rec.stats()
    assert stats["spooled"] == 0 and stats["rejected"] == 0 and stats["acknowledged"] == len(sent) + 2, stats

    codec = Codec()
    ours: dict[str, tuple[str, str | None, dict[str, Any]]] = {}  # event_id -> (type, key, our codec's reading)
    for key, value in log.appended:
        event = codec.decode(value)
        ours[event.record["event_id"]] = (event.name, None if key is None else key.decode(), event.record)
    lines = consume(node, kafka_broker, registry_url, topic, len(ours))
    theirs = {line["record"]["event_id"]: line for line in lines}
    assert len(lines) == len(theirs) and theirs.keys() == ours.keys(), "kafkajs read other events than we wrote"

    problems: list[str] = []
    for event_id, (name, key, record) in ours.items():
        got = theirs[event_id]
        where = f"{name} {event_id} (partition {got['partition']}, offset {got['offset']})"
        found = mismatches(got, {"type": f"llm_lineage.{name}", "schema_id": codec.schema_id(name), "key": key,
                                 "record": as_kafkajs_json(record)}, "message")
        if name == "InferenceRecorded":
            found += check_inference(got, sent[record["output_id"]])
        elif name == "BundleRegistered":
            found += check_bundle(got, bundle)
        else:
            found += mismatches(got["record"], as_kafkajs_json({**consumed, "tenant": "default"}))
        problems += [f"{where}: {p}" for p in found]
        if got["record"].keys() != record.keys():
            problems.append(f"{where}: fields {sorted(got['record'])} != {sorted(record)}")
    assert not problems, "kafkajs decoded differently:\n" + "\n".join(problems)

    # One lineage chain, one key, one partition, in the order it was recorded.
    chain = [theirs[e] for e, (_, key, _) in ours.items() if key == "trace-2026-12-04-coastal"]
    assert len(chain) == 2 and chain[0]["partition"] == chain[1]["partition"], chain
    assert int(chain[0]["offset"]) < int(chain[1]["offset"]), chain
