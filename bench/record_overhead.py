"""Caller-thread cost of one Recorder.record() call, beside an OpenTelemetry SDK span, in the same run.

The recorder writes to a real SqliteEventLog in a temp dir, so its background writer (encoding, SQLite
appends) competes for the GIL while the caller is timed, as in an application. Each call is timed on its
own with time.perf_counter_ns. Variants, interleaved in rounds so drift hits them alike:

  record_prebuilt   record() with SDK values built beforehand
  build_and_record  build the SDK values from the call's raw data, then record() (what an app pays)
  build_only        the value building alone (to split the two above)
  otel_span         start_as_current_span + 10 GenAI-style attributes, BatchSpanProcessor, discarding exporter

Before each variant's round both background pipelines are drained (untimed), so each variant runs only
against its own background thread. Prints one JSON object; the ratios ours/otel are the headline.
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import emit, goal, machine, percentiles, progress, ratio
from _workload import Call, CallInputs, build_call, call_pool, message_bytes, record_call
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from producers.recorder import Recorder

VARIANTS = ("record_prebuilt", "build_and_record", "build_only", "otel_span")


class DiscardingExporter(SpanExporter):
    """Counts and drops: the cheapest possible exporter, so the span's own cost is what is measured."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=200_000, help="timed calls per variant (default 200000)")
    p.add_argument("--round-size", type=int, default=5_000,
                   help="calls per variant per round; rounds alternate the variants (default 5000)")
    p.add_argument("--pool", type=int, default=256, help="distinct calls cycled through (default 256)")
    p.add_argument("--warmup", type=int, default=3_000, help="untimed calls per variant first (default 3000)")
    p.add_argument("--gap-us", type=float, default=0.0,
                   help="untimed busy work between calls, to model an app that records at a lower rate "
                        "(default 0: back to back, the writer always busy)")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args()


Runner = Callable[[list[CallInputs], list[Call], list[int], int, int], None]


def make_variants(recorder: Recorder, tracer: Any, gap_ns: int) -> dict[str, Runner]:
    """Each runner times `count` calls starting at pool index `start`, appending ns to `out`; with `gap_ns`
    it spins (untimed, holding the GIL like application code would) between calls."""
    clock = time.perf_counter_ns

    def pause(t: int) -> None:
        until = t + gap_ns
        while clock() < until:
            pass

    def record_prebuilt(raw: list[CallInputs], built: list[Call], out: list[int], start: int, count: int) -> None:
        n = len(built)
        for i in range(start, start + count):
            v = built[i % n]
            t0 = clock()
            record_call(recorder, v)
            t1 = clock()
            out.append(t1 - t0)
            if gap_ns:
                pause(t1)

    def build_and_record(raw: list[CallInputs], built: list[Call], out: list[int], start: int, count: int) -> None:
        n = len(raw)
        for i in range(start, start + count):
            c = raw[i % n]
            t0 = clock()
            record_call(recorder, build_call(c))
            t1 = clock()
            out.append(t1 - t0)
            if gap_ns:
                pause(t1)

    def build_only(raw: list[CallInputs], built: list[Call], out: list[int], start: int, count: int) -> None:
        n = len(raw)
        for i in range(start, start + count):
            c = raw[i % n]
            t0 = clock()
            build_call(c)
            t1 = clock()
            out.append(t1 - t0)
            if gap_ns:
                pause(t1)

    def otel_span(raw: list[CallInputs], built: list[Call], out: list[int], start: int, count: int) -> None:
        n = len(raw)
        for i in range(start, start + count):
            c = raw[i % n]
            t0 = clock()
            with tracer.start_as_current_span("llm.call") as span:
                span.set_attribute("gen_ai.operation.name", "chat")
                span.set_attribute("gen_ai.system", c.provider)
                span.set_attribute("gen_ai.request.model", c.requested)
                span.set_attribute("gen_ai.response.model", c.served)
                span.set_attribute("gen_ai.request.temperature", c.temperature)
                span.set_attribute("gen_ai.request.max_tokens", c.max_tokens)
                span.set_attribute("gen_ai.usage.input_tokens", c.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", c.completion_tokens)
                span.set_attribute("gen_ai.response.finish_reasons", ("stop",))
                span.set_attribute("app.feature", c.feature)
            t1 = clock()
            out.append(t1 - t0)
            if gap_ns:
                pause(t1)

    return {"record_prebuilt": record_prebuilt, "build_and_record": build_and_record,
            "build_only": build_only, "otel_span": otel_span}


def timer_floor_ns(samples: int = 100_000) -> float:
    clock, out = time.perf_counter_ns, []
    for _ in range(samples):
        t0 = clock()
        out.append(clock() - t0)
    out.sort()
    return float(out[len(out) // 2])


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    info = machine()
    raw = call_pool(args.seed, args.pool)
    built = [build_call(c) for c in raw]
    with tempfile.TemporaryDirectory(prefix="bench-record-") as tmp:
        log_path = Path(tmp) / "log.db"
        recorder = Recorder(log_url=f"sqlite:///{log_path}", tenant="grid-ops")
        exporter = DiscardingExporter()
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("bench.record_overhead")
        runners = make_variants(recorder, tracer, int(args.gap_us * 1000))

        def settle() -> None:
            recorder.flush(timeout=120)
            provider.force_flush()

        progress(f"warm-up: {args.warmup} calls per variant")
        for name in VARIANTS:
            runners[name](raw, built, [], 0, args.warmup)
            settle()
        floor = timer_floor_ns()

        samples: dict[str, list[int]] = {name: [] for name in VARIANTS}
        background_cpu_s = dict.fromkeys(VARIANTS, 0.0)
        rounds = max(1, -(-args.calls // args.round_size))
        progress(f"timing {args.calls} calls per variant in {rounds} rounds of {args.round_size}")
        for r in range(rounds):
            count = min(args.round_size, args.calls - r * args.round_size)
            order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
            for name in order:
                gc.collect()
                # CPU the other threads (writer, span processor) spend on this round, drained by settle().
                cpu0, own0 = time.process_time(), time.thread_time()
                runners[name](raw, built, samples[name], r * args.round_size, count)
                settle()
                background_cpu_s[name] += (time.process_time() - cpu0) - (time.thread_time() - own0)
            if (r + 1) % 10 == 0:
                progress(f"round {r + 1}/{rounds}")
        progress("flushing the recorder")
        t0 = time.monotonic()
        recorder.flush(timeout=300)
        flush_s = time.monotonic() - t0
        stats = recorder.stats()
        recorder.close()
        provider.shutdown()
        with sqlite3.connect(log_path) as conn:
            log_rows = conn.execute("SELECT COUNT(*), AVG(LENGTH(value)) FROM events").fetchone()

    total_recorded = args.warmup * 2 + args.calls * 2
    result = report(args, info, floor, samples)
    result["background_cpu_us_per_call"] = {
        name: round(background_cpu_s[name] / args.calls * 1e6, 1) for name in VARIANTS
    }
    result["writer"] = {
        "record_calls": total_recorded, "acknowledged": stats["acknowledged"], "rejected": stats["rejected"],
        "spooled": stats["spooled"], "flush_completed": True, "final_flush_s": round(flush_s, 3),
        "log_rows": log_rows[0], "avg_event_bytes": round(log_rows[1] or 0),
        "all_acknowledged": stats["acknowledged"] == total_recorded == log_rows[0],
    }
    result["otel"] = {"spans_started": args.warmup + args.calls, "spans_exported": exporter.exported}
    result["call_shape"] = {"message_bytes": message_bytes(raw[0]),
                            "document_chars": [len(d[3]) for d in raw[0].docs]}
    result["wall_s"] = round(time.monotonic() - started, 1)
    emit(result)


def report(args: argparse.Namespace, info: dict[str, Any], floor: float,
           samples: dict[str, list[int]]) -> dict[str, Any]:
    us = {name: percentiles(s, scale=1e-3) for name, s in samples.items()}
    otel = us["otel_span"]
    ratios = {
        f"{name}/otel_span": {q: ratio(us[name][q], otel[q]) for q in ("p50", "p99", "p999", "mean")}
        for name in ("record_prebuilt", "build_and_record")
    }
    goals = {}
    for name in ("record_prebuilt", "build_and_record"):
        goals[name] = {
            "p50_us": goal(us[name]["p50"], 15, "us"),
            "p99_us": goal(us[name]["p99"], 100, "us"),
            "p50_below_otel": {"value": ratios[f"{name}/otel_span"]["p50"], "goal": "< 1.0",
                               "met": us[name]["p50"] < otel["p50"]},
            "p99_below_otel": {"value": ratios[f"{name}/otel_span"]["p99"], "goal": "< 1.0",
                               "met": us[name]["p99"] < otel["p99"]},
        }
    return {
        "benchmark": "record_overhead",
        "config": {"calls_per_variant": args.calls, "round_size": args.round_size, "pool": args.pool,
                   "warmup": args.warmup, "log": "SqliteEventLog (temp dir), writer running"},
        "machine": info,
        "timer_floor_ns": floor,
        "latency_us": us,
        "ratios": ratios,
        "goals": goals,
    }


if __name__ == "__main__":
    main()
