"""`pipeline run | stage NAME | gateway | topics | dlq | replay | audit verify DIR | schemas | bench | broker | ml |
incidents | decisions | workflows | status`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from pipeline import __version__
from pipeline.config import ML_EXTRA, ConfigError, Settings, load_settings, ml_installed


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = Path(args.data_dir)
    return load_settings(**overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.compose.process import Plan, run
    from pipeline.stages import stage_classes

    settings = _settings(args)
    if args.demo:  # its own broker, Prometheus and cluster, and a fresh data dir unless --data-dir
        from pipeline.compose.demo import demo_settings

        settings = demo_settings(settings, keep_data=args.data_dir is not None)
    plan = Plan(
        stages=[*stage_classes(), *(["audit"] if settings.audit_enabled else [])],
        ingest=True,
        gateway=True,
        embedded_broker=not settings.kafka_bootstrap_servers,
        apply_topics=True,
        embedded_ml=True,
        watch=settings.kube_watch,
        demo=args.demo,
    )
    return run(settings, plan)


def cmd_stage(args: argparse.Namespace) -> int:
    from pipeline.compose.process import Plan, run

    settings = _settings(args)
    _require_broker(settings)
    if args.name == "ingest":
        return run(settings, Plan(ingest=True))
    if args.name == "watch":
        return run(settings, Plan(watch=True))
    return run(settings, Plan(stages=[args.name]))


def cmd_audit(args: argparse.Namespace) -> int:
    """`pipeline audit verify DIR`: 0 and a summary when the chain is intact, 1 and the first broken link."""
    from pipeline.adapters.audit_log import verify

    directory = Path(args.dir)
    if not directory.is_dir():
        print(f"{directory}: not a directory", file=sys.stderr)
        return 2
    report = verify(directory)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    elif report.broken is None and not report.lines:
        print(f"intact: {len(report.files)} file(s), no lines yet")
    elif report.broken is None:
        print(f"intact: {len(report.files)} file(s), {report.lines} line(s), seq {report.first_seq}..{report.last_seq}"
              f", records from {report.first_time} to {report.last_time}")
    else:
        print(f"broken: {report.broken}", file=sys.stderr)
    return 0 if report.broken is None else 1


def cmd_gateway(args: argparse.Namespace) -> int:
    from pipeline.compose.process import Plan, run

    settings = _settings(args)
    _require_broker(settings)
    return run(settings, Plan(gateway=True))


def _configure_logging(settings: Settings) -> None:
    """Log lines (progress of slow first-run steps included) as `pipeline run` writes them: LOG_FORMAT on stderr."""
    from pipeline.compose.process import configure_logs

    configure_logs(settings)


def _require_broker(settings: Settings) -> None:
    if not settings.kafka_bootstrap_servers:
        sys.exit("KAFKA_BOOTSTRAP_SERVERS is not set (only `pipeline run` starts an embedded broker)")


def cmd_topics(args: argparse.Namespace) -> int:
    from pipeline.bus import topics

    settings = _settings(args)
    _require_broker(settings)
    if args.action == "apply":
        reports = asyncio.run(topics.apply(settings))
        for r in reports:
            print(f"{r.topic:40} {r.action}" + (f"  ({'; '.join(r.drift)})" if r.drift else ""))
        return 2 if any(r.action == "drift" for r in reports) else 0
    for row in asyncio.run(topics.describe(settings)):
        if row["partitions"] is None:
            print(f"{row['topic']:40} missing")
        else:
            print(f"{row['topic']:40} partitions={row['partitions']} messages={row['messages']} high_water={row['high_water']}")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    """Dead letters: list, show, replay (pipeline/forensics/deadletters.py); a refusal exits 2."""
    from pipeline.forensics import deadletters as dlq

    settings = _settings(args)
    _require_broker(settings)
    if args.action == "list":
        work = dlq.list_command(settings, sys.stdout, stage=args.stage, since=args.since, as_json=args.json)
    elif args.action == "show":
        work = dlq.show_command(settings, sys.stdout, args.id, as_json=args.json)
    else:
        if bool(args.ids) == args.all:
            print("pipeline dlq replay: name dead letter IDs, or --all --stage STAGE", file=sys.stderr)
            return 2
        work = dlq.replay_command(settings, sys.stdout, args.ids, stage=args.stage, since=args.since,
                                  force=args.force)
    try:
        return asyncio.run(work)
    except (dlq.Refused, LookupError) as exc:
        print(f"pipeline dlq {args.action}: {exc}", file=sys.stderr)
        return 2


def _since(text: str) -> datetime:
    from pipeline.domain.times import parse_when

    try:
        return parse_when(text, datetime.now(UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--since: {exc}") from None


def _add_dlq(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dlq = sub.add_parser("dlq", help="dead letters: list them, show one, replay them into their origin topic")
    actions = dlq.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="a table of the dead letters (ID = <partition>:<offset>)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line instead of the table")
    show = actions.add_parser("show", help="one dead letter: origin, error, attempts, headers and the record")
    show.add_argument("id", help="<partition>:<offset> in the dead-letter topic, as `list` shows it")
    show.add_argument("--json", action="store_true")
    replay = actions.add_parser("replay", help="re-inject dead letters into their origin topic, with dlq_replay_of")
    replay.add_argument("ids", nargs="*", metavar="ID", help="<partition>:<offset> of each dead letter")
    replay.add_argument("--all", action="store_true",
                        help="every dead letter of --stage (since --since) not yet replayed")
    replay.add_argument("--force", action="store_true",
                        help="replay even if already replayed, truncated or from a topic not ours")
    for parser_ in (listing, replay):
        parser_.add_argument("--stage", help="only the dead letters of this stage")
        parser_.add_argument("--since", type=_since, metavar="WHEN",
                             help="written since: a duration (30m, 6h, 2d) or an ISO 8601 time")
    dlq.set_defaults(func=cmd_dlq)


def cmd_schemas(args: argparse.Namespace) -> int:
    from pipeline import schemas

    settings = load_settings()
    out = Path(args.out) if args.out else schemas.SCHEMAS_DIR
    from pipeline.compose import openapi

    if args.check:
        stale = [str(out / name) for name in schemas.drift(out, settings.topics_dir)]
        stale += [str(openapi.OPENAPI_PATH)] if openapi.drift(settings) else []
        for name in stale:
            print(f"out of date: {name}")
        return 1 if stale else 0
    for path in [*schemas.export(out, settings.topics_dir), openapi.export(settings)]:
        print(path)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """`pipeline replay`: part of the log (an incident, a window, an offset range), or with `--what-if` a window
    decided again under other rules or threshold."""
    from pipeline.forensics import replay

    settings = _settings(args)
    _require_broker(settings)
    return replay.main(args, settings)


def cmd_bench(args: argparse.Namespace) -> int:
    from pipeline.bench import main as bench_main

    return bench_main(args)


def cmd_broker(args: argparse.Namespace) -> int:
    """Run only the embedded Kafka broker in the foreground (for development and external tooling)."""
    import signal
    import threading

    from pipeline.embedded.kafka import LocalKafka, ensure_kafka

    settings = _settings(args)
    _configure_logging(settings)
    ensure_kafka(cache_dir=settings.cache_dir)
    broker = LocalKafka(settings.data_dir / "kafka", port=settings.embedded_kafka_port or None,
                        cache_dir=settings.cache_dir, relay_log=True)
    print(json.dumps({"bootstrap": broker.start()}), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    broker.stop()
    return 0


def cmd_ml(args: argparse.Namespace) -> int:
    """The reference ML service: `serve` it (training the model the first time), (re)`train` it from
    generated history or a real cluster's Prometheus, or `evaluate` it on held-out generated histories."""
    settings = load_settings()
    _configure_logging(settings)
    model_dir = Path(args.model_dir).expanduser() if args.model_dir else None
    if not ml_installed():
        raise ConfigError(ML_EXTRA)
    if args.action == "serve":
        from pipeline.compose.ml import run as serve_ml

        return serve_ml(args.host, args.port, model_dir, settings)
    if args.action == "evaluate":
        return _ml_evaluate(args, model_dir, settings)
    if args.prometheus:
        from pipeline.ml.cluster import main as train_from_cluster

        return train_from_cluster(args.prometheus, since=args.since, every=args.every, namespaces=args.namespace,
                                  model_dir=model_dir, settings=settings)
    if args.since or args.every or args.namespace:
        sys.exit("--since, --every and --namespace need --prometheus URL")
    from pipeline.ml.model import default_model_dir, train

    model = train(model_dir, settings=settings)
    print(json.dumps({"model": model.name, "model_version": model.version,
                      "model_dir": str(model_dir or default_model_dir(settings)), "training": model.training}))
    return 0


def _ml_evaluate(args: argparse.Namespace, model_dir: Path | None, settings: Settings) -> int:
    from pipeline.ml.evaluate import EVALUATION_SEEDS, evaluate, print_report
    from pipeline.ml.model import ReferenceModel, default_model_dir, train_or_load

    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(EVALUATION_SEEDS)
    except ValueError:
        sys.exit(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    # The model `pipeline ml serve --model-dir` would serve (trained the first time, like serve does).
    if args.no_train:
        model = ReferenceModel.load(model_dir or default_model_dir(settings))
    else:
        model = train_or_load(model_dir, settings=settings)
    try:
        result = evaluate(model, seeds, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except ValueError as exc:
        sys.exit(str(exc))
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print_report(result, detail=args.detail)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pipeline", description=__doc__)
    p.add_argument("--version", action="version", version=f"pipeline {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="everything in one process: embedded broker (if none configured), stages, ingest, gateway")
    run.add_argument("--port", type=int)
    run.add_argument("--data-dir")
    run.add_argument("--demo", action="store_true",
                     help="also start Prometheus with a generated cluster history and a test cluster, play a scripted "
                          "incident story and print where to look (data in a temporary dir unless --data-dir)")
    run.set_defaults(func=cmd_run)

    stage = sub.add_parser("stage", help="run one stage against an existing broker")
    stage.add_argument("name", choices=["ingest", "watch", "correlate", "enrich", "score", "propose", "arbitrate",
                                               "remediate", "audit", "snapshot"])
    stage.add_argument("--port", type=int)
    stage.set_defaults(func=cmd_stage)

    audit = sub.add_parser("audit", help="check an audit trail written by `pipeline stage audit`")
    audit.add_argument("action", choices=["verify"])
    audit.add_argument("dir", help="the trail's directory (AUDIT_DIR)")
    audit.add_argument("--json", action="store_true", help="the report as JSON")
    audit.set_defaults(func=cmd_audit)

    gateway = sub.add_parser("gateway", help="run the REST gateway against an existing broker")
    gateway.add_argument("--port", type=int)
    gateway.set_defaults(func=cmd_gateway)

    topics = sub.add_parser("topics", help="create missing topics and report drift, or list them")
    topics.add_argument("action", choices=["apply", "list"])
    topics.set_defaults(func=cmd_topics)

    _add_dlq(sub)

    schemas = sub.add_parser("schemas", help="write JSON Schema and AsyncAPI files for every event type, "
                                                      "and docs/openapi.json")
    schemas.add_argument("action", choices=["export"])
    schemas.add_argument("--out")
    schemas.add_argument("--check", action="store_true", help="exit 1 if the files differ from the models")
    schemas.set_defaults(func=cmd_schemas)

    broker = sub.add_parser("broker", help="run only the embedded Kafka broker")
    broker.add_argument("--data-dir")
    broker.set_defaults(func=cmd_broker)

    ml = sub.add_parser("ml", help="the reference ML service (KServe v1 and v2 + legacy ML routes), train or evaluate its model")
    ml.add_argument("action", choices=["serve", "train", "evaluate"])
    ml.add_argument("--host", default="127.0.0.1", help="serve: address to bind")
    ml.add_argument("--port", type=int, default=8090, help="serve: port")
    ml.add_argument("--model-dir", help="default: $PIPELINE_CACHE_DIR/ml/anomaly-detector (~/.cache/pipeline/...)")
    ml.add_argument("--prometheus", metavar="URL",
                    help="train: from this Prometheus/Thanos (a real cluster's history) instead of generated history")
    ml.add_argument("--since", metavar="DURATION", help="train --prometheus: how far back, e.g. 6h, 2d (default 24h)")
    ml.add_argument("--every", metavar="DURATION", help="train --prometheus: one vector per scope every (default 5m)")
    ml.add_argument("--namespace", action="append",
                    help="train --prometheus: only these namespaces' pods and deployments (repeatable; default all)")
    ml.add_argument("--seeds", help="evaluate: held-out history seeds, comma-separated (default 101,102)")
    ml.add_argument("--detail", action="store_true", help="evaluate: also a line per history and scope")
    ml.add_argument("--json", action="store_true", help="evaluate: the counts as JSON instead of the table")
    ml.add_argument("--no-train", action="store_true", help="evaluate: the model in --model-dir as it is, never retrain")
    ml.set_defaults(func=cmd_ml)

    from pipeline.forensics.arguments import add_arguments as replay_arguments

    replay = sub.add_parser("replay", help="show part of the log (an incident, a time window, an offset range) "
                                           "without disturbing any consumer group")
    replay_arguments(replay)
    replay.set_defaults(func=cmd_replay)

    from pipeline.operator.arguments import add_commands as operator_commands

    operator_commands(sub)  # incidents, decisions, workflows, status: the gateway's REST API at a terminal

    from pipeline.bench import add_arguments

    bench = sub.add_parser("bench", help="measure throughput, latency, memory and start time against baselines")
    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:  # one line naming the variable, not a traceback
        print(f"pipeline: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
