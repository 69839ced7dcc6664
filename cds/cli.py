"""The `pacing-cds` command: serve, feedback report, purge, settings."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from cds.settings import Settings, SettingsError, load_settings, settings_table
from cds.startup import check_rules, print_problems


def _bind(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{host}:{settings.port}"


def serve(settings: Settings) -> int:
    """Run the service under gunicorn on HOST:PORT, with its own folder for the workers' metrics."""
    import shutil
    import tempfile

    # Before prometheus-client is imported: it picks per-process files or in-memory values once, at import.
    metrics_dir = tempfile.mkdtemp(prefix="pacing-cds-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return _serve(settings)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(settings: Settings) -> int:
    """Run the service under gunicorn on HOST:PORT: asyncio workers read whole requests (cds.serving), then
    THREADS threads per worker run the application."""
    from gunicorn.app.base import BaseApplication

    from cds import configure_logging, create_app, logs, metrics
    from cds.store.database import Store

    knowledge = check_rules(settings)  # refuse to start on broken knowledge, before any worker boots
    if knowledge is None:
        return 2
    store = Store(settings.database_url)
    store.create_schema()  # once, before the workers start
    store.close()

    from cds.serving import WorkerLoad, complete_reason_phrases

    load = WorkerLoad()
    complete_reason_phrases()  # before the workers fork: each inherits the table

    def post_fork(_arbiter: Any, worker: Any) -> None:
        load.join(worker.age)

    def child_exit(_arbiter: Any, worker: Any) -> None:
        load.leave(worker.age)
        metrics.worker_exit(worker.pid)

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", [_bind(settings)])
            self.cfg.set("workers", settings.workers)
            # Not gthread: its threads read requests themselves, so a few slow clients stopped every worker.
            self.cfg.set("worker_class", "asgi")
            self.cfg.set("asgi_lifespan", "off")
            # uvloop's event loop (libuv) reads and writes the sockets in C: about 0.1 ms less CPU a 90-day call
            # than asyncio's. gunicorn falls back to asyncio, with a warning, where uvloop is not installed.
            self.cfg.set("asgi_loop", "uvloop")
            # An idle kept-alive connection costs the event loop almost nothing; closing it after gunicorn's 2 s
            # default raced with clients that reuse it after a slow answer elsewhere (RemoteProtocolError).
            self.cfg.set("keepalive", 30)
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("proc_name", "pacing-cds")
            self.cfg.set("loglevel", settings.log_level.lower())
            if settings.log_format == "json":
                self.cfg.set("logconfig_dict", logs.gunicorn_json_config())
            self.cfg.set("child_exit", child_exit)
            self.cfg.set("post_fork", post_fork)
            if settings.metrics_port is not None:
                self.cfg.set("when_ready", lambda _arbiter: metrics.serve_port(settings.host, settings.metrics_port))
            if "control_socket_disable" in self.cfg.settings:
                # A shared control socket in $HOME would let one instance's tooling reach another.
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            from cds.collector import settle_heap
            from cds.serving import BufferedWsgi, Pages

            app = BufferedWsgi(create_app(settings), settings.threads, settings.max_body_bytes,
                               settings.client_timeout_s, load, Pages(settings.chart_threads, settings.chart_queue))
            settle_heap()  # everything built so far lives as long as the worker
            return app

    configure_logging(settings.log_level, settings.log_format)
    if settings.now is not None:
        logging.getLogger("cds").warning(
            "PACING_CDS_NOW pins the clock at %s: every call is evaluated as of that instant, not today (demos and "
            "tests only)", settings.now.isoformat())
    logging.getLogger("cds").info(
        "pacing-cds serving %s/cds-services on %s (%d workers x %d threads behind a buffering event loop, env %s)%s",
        settings.base_url, _bind(settings), settings.workers, settings.threads, settings.env,
        f"; metrics on port {settings.metrics_port}" if settings.metrics_port else "")
    Server().run()
    return 0


def feedback_report(settings: Settings, out: Any = sys.stdout) -> int:
    """Cards per service and card topic, each counted once by its latest outcome, then the override reasons."""
    from sqlalchemy.engine import make_url

    from cds.feedback_report import render
    from cds.knowledge import RuleError, load_ruleset_info
    from cds.store.database import Store

    try:  # override reasons are named as the rule set names them
        info = load_ruleset_info(settings.rules_path)
    except RuleError as exc:
        print_problems(str(settings.rules_path), exc.problems)
        return 2
    store = Store(settings.database_url)
    try:
        store.create_schema()
        report = store.feedback_report()
    finally:
        store.close()
    url = make_url(settings.database_url).render_as_string(hide_password=True)
    print(f"Feedback report ({url})", file=out)
    if not report.events:
        print("No feedback stored.", file=out)
        return 0
    render(report, info, out)
    return 0


def purge(settings: Settings, days: int | None, out: Any = sys.stdout) -> int:
    """Delete feedback, audit events and issued cards older than RETENTION_DAYS (or --days)."""
    from datetime import datetime, timedelta

    from cds.store.database import Store

    keep = days if days is not None else settings.retention_days
    before = datetime.now(UTC) - timedelta(days=keep)
    store = Store(settings.database_url)
    try:
        store.create_schema()
        counts = store.purge(before)
    finally:
        store.close()
    print(f"Purged records older than {keep} days (before {before.isoformat(timespec='seconds')}): "
          + ", ".join(f"{n} {name}" for name, n in counts.items()), file=out)
    return 0


def rules_check(settings: Settings, out: Any = sys.stdout, reading: bool = False) -> int:
    """Load the rules as every command does (and, beside them in a checkout, the examples they own), then make the
    authoring checks (cds/knowledge/checks.py); `reading`: print the reading level of every patient text first."""
    from cds.knowledge.checks import check_rule_set
    from cds.knowledge.examples import missing_examples

    knowledge = check_rules(settings)
    if knowledge is None:
        return 1
    report = check_rule_set(knowledge, settings.rules_path)
    if reading:
        print(report.reading, file=out)
    for note in report.notes:
        print(f"pacing-cds: {note}", file=out)
    if report.problems:
        print_problems(str(settings.rules_path), report.problems, sys.stderr)
        return 1
    examples = ""
    if knowledge.examples_dir is None:
        print(f"{missing_examples(settings.rules_path)}: the rules' examples are not checked", file=out)
    else:
        examples = f"{len(knowledge.examples())} examples, "
    print(f"{knowledge.info.name} {knowledge.version}: {len(knowledge.rules)} rules, "
          f"{len(knowledge.parameters)} parameters, {len(knowledge.scenarios)} scenarios, {examples}"
          f"services {', '.join(sorted(knowledge.services))}: OK", file=out)
    return 0


def rules_test(settings: Settings, out: Any = sys.stdout) -> int:
    """Run every scenario and, beside the rules in a checkout, every example; one line per rule, then the
    failures, then a closing count."""
    from cds.engine import RuleEngine
    from cds.engine.scenarios import run_scenarios
    from cds.knowledge.examples import missing_examples
    from cds.services.examples import run_examples

    knowledge = check_rules(settings)
    if knowledge is None:
        return 1
    engine = RuleEngine(knowledge, silent_as_live=True)  # a rule in pilot is tested as if live
    results = run_scenarios(knowledge, engine)
    examples = {r.example.name: r for r in run_examples(knowledge.examples(), engine, settings.base_url)}
    width = max(len(c.rule.id) for c in knowledge.rules)
    lines = []
    for compiled in knowledge.rules:
        mine = [r for r in results if r.scenario.rule == compiled.rule.id]
        owned = [examples[name] for name in compiled.rule.examples if name in examples]
        fires = sum(1 for r in mine if r.scenario.fires)
        failed = [f"{r.scenario.name!r} [{r.service}]: {r.problem}" for r in mine if not r.ok]
        failed += [f"example {r.example.name} [{r.example.intent.service}]: {'; '.join(r.problems)}"
                   for r in owned if not r.ok]
        scenarios = f"{len(mine)} scenarios ({fires} fire, {len(mine) - fires} do not)"
        lines.append(("FAIL" if failed else "ok", compiled, scenarios, _examples_words(owned, bool(examples)),
                      failed))
    scenarios_width = max(len(line[2]) for line in lines)
    examples_width = max(len(line[3]) for line in lines)
    for status, compiled, scenarios, owned_words, failed in lines:
        mode = "  (silent)" if compiled.rule.mode == "silent" else ""
        print(f"{status:<4}  {compiled.rule.id:<{width}}  v{compiled.rule.version}  {scenarios:<{scenarios_width}}  "
              + (f"{owned_words:<{examples_width}}  " if examples else "") + f"{compiled.file}{mode}", file=out)
        for failure in failed:
            print(f"      - {failure}", file=out)
    if knowledge.examples_dir is None:
        print(f"{missing_examples(settings.rules_path)}: no example run", file=out)
    checked = [r.ok for r in results] + [r.ok for r in examples.values()]
    passed = sum(checked)
    print(f"{passed} passed, {len(checked) - passed} failed", file=out)
    return 0 if passed == len(checked) else 1


def _examples_words(owned: list[Any], running: bool) -> str:
    """A rule's examples in a few words: how many, and how many failed."""
    if not running:
        return ""
    if not owned:
        return "no example"
    failed = sum(1 for r in owned if not r.ok)
    count = f"{len(owned)} example{'s' if len(owned) > 1 else ''}"
    return f"{count}, {failed} failed" if failed else f"{count} passed"


def evaluate(settings: Settings, path: str, now_text: str | None, service_id: str | None,
             out: Any = sys.stdout) -> int:
    """Evaluate a CDS Hooks request file in-process, by the same call path as the HTTP service; print the cards
    and the trace."""
    knowledge = check_rules(settings)
    if knowledge is None:
        return 2
    read = _read_request(path, now_text, settings)
    if read is None:
        return 2
    body, now = read
    from cds.services import services_of

    services = services_of(knowledge)
    hook = body.get("hook") if isinstance(body, dict) else None
    service = services.get(service_id) if service_id else next(
        (s for s in services.values() if s.hook == hook), None)
    if service is None:
        print(f"pacing-cds: no service for hook {str(hook)[:64]!r}; name one with --service", file=sys.stderr)
        return 2
    from cds.engine import RuleEngine
    from cds.errors import CdsError
    from cds.fhir.allowlist import AllowList
    from cds.fhir.client import FhirClient
    from cds.services.pipeline import answer

    fhir = FhirClient(settings.fhir_timeout_s, settings.fhir_max_pages, max_bytes=settings.fhir_max_bytes,
                      max_entries=settings.fhir_max_entries)
    try:
        answered = answer(service, body, RuleEngine(knowledge), fhir, now, base_url=settings.base_url,
                          allowed=AllowList.parse(settings.allowed_fhir_servers), silent=service.id in settings.silent)
    except CdsError as exc:
        print(f"pacing-cds: {exc.message}", file=sys.stderr)
        return 1
    finally:
        fhir.close()
    print(f"{service.id} ({service.hook}) for Patient/{answered.context.patientId} as of {now.isoformat()}",
          file=out)
    print(f"{knowledge.info.name} {knowledge.version}\n", file=out)
    _print_cards(answered.outcome.response.cards, out, answered.outcome.silence)
    if answered.outcome.silent:
        print("Silent (evaluated and audited, not returned)\n", file=out)
        _print_cards([card for card, _ in answered.outcome.silent], out)
    _print_trace(answered, out)
    return 0


def _read_request(path: str, now_text: str | None, settings: Settings) -> tuple[Any, Any] | None:
    """The request body and the evaluation time, or None after saying why they cannot be read."""
    import json

    from cds.clock import parse_now

    try:
        with open(path, encoding="utf-8") as handle:
            body = json.loads(handle.read())
        now = parse_now(now_text, settings)
    except (OSError, ValueError) as exc:
        print(f"pacing-cds: cannot read {path}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return None
    if not isinstance(body, dict):
        print(f"pacing-cds: cannot read {path}: not a JSON object", file=sys.stderr)
        return None
    return body, now


def _print_cards(cards: list[Any], out: Any, silence: str | None = None) -> None:
    import textwrap

    if not cards:
        print(f"No cards: {silence or 'nothing to recommend'}.\n", file=out)
    for card in cards:
        topic = card.source.topic.code if card.source.topic else "?"
        print(f"[{card.indicator}] {topic}: {card.summary}", file=out)
        for suggestion in card.suggestions or []:
            actions = ", ".join(f"{a.type} {a.resource['resourceType'] if a.resource else a.resourceId}"
                                for a in suggestion.actions or [])
            print(f"    suggestion: {suggestion.label} ({actions})", file=out)
        print(textwrap.indent(card.detail or "", "    | "), file=out)
        print(file=out)


def _print_trace(answered: Any, out: Any) -> None:
    import json

    outcome = answered.outcome
    print("Trace", file=out)
    for fact in outcome.facts:
        print(f"    fact   {json.dumps(fact, separators=(', ', ': '))}", file=out)
    for fired in outcome.evaluation.trace:
        params = ", ".join(f"{k}={v}" for k, v in fired.parameters.items())
        print(f"    fired  {fired.rule_id} v{fired.rule_version} -> {fired.code}: {fired.outcome}"
              + (f" [{params}]" if params else ""), file=out)
    for key, info in answered.data.summary().items():
        print(f"    data   {key}: {info['count']} from {info['source']}"
              + (f" ({'; '.join(info['notes'])})" if info.get("notes") else ""), file=out)
    for skipped in outcome.record.skipped:
        print(f"    skipped {skipped}", file=out)


def show_settings(out: Any = sys.stdout) -> int:
    for name, default, description in settings_table():
        print(f"{name:<28} {default or '(unset)':<28} {description}", file=out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacing-cds", description="Pacing CDS: CDS Hooks 2.0 service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the CDS service (gunicorn) on PACING_CDS_HOST:PACING_CDS_PORT")
    feedback = commands.add_parser("feedback", help="feedback analytics")
    feedback_commands = feedback.add_subparsers(dest="feedback_command", required=True)
    feedback_report_cmd = feedback_commands.add_parser(
        "report", help="cards per service and card topic by their latest outcome (accepted / overridden), and "
                       "override reasons; --html: override trends per rule and week")
    feedback_report_cmd.add_argument("--html", metavar="FILE", help="write the override trends per rule and week "
                                                                     "(with charts) to this HTML file")
    feedback_report_cmd.add_argument("--now", help="with --html: the report's day, a date or date-time (default: the "
                                                   "clock)")
    report = commands.add_parser("report", help="governance reports from the audit")
    report_commands = report.add_subparsers(dest="report_command", required=True)
    firing = report_commands.add_parser("firing", help="per service, rule and day: evaluations, cards shown, cards "
                                                       "silent, distinct patients")
    firing.add_argument("--since", help="from this day on (YYYY-MM-DD; default: every day audited)")
    firing.add_argument("--format", choices=("table", "csv", "html"), default="table", help="default: table")
    firing.add_argument("--out", metavar="FILE", help="write the report to this file (default: standard output)")
    purge_cmd = commands.add_parser("purge", help="delete feedback and audit records past the retention period")
    purge_cmd.add_argument("--days", type=int, help="keep this many days (default PACING_CDS_RETENTION_DAYS)")
    commands.add_parser("settings", help="list the PACING_CDS_* settings with their defaults")
    evaluate_cmd = commands.add_parser("evaluate", help="evaluate a CDS Hooks request file: cards and trace")
    evaluate_cmd.add_argument("request", help="a CDS Hooks request (JSON)")
    evaluate_cmd.add_argument("--now", help="evaluate as of this date or date-time (default: the clock)")
    evaluate_cmd.add_argument("--service", help="service id (default: the one for the request's hook)")
    panel = commands.add_parser("worklist", help="the pacing worklist of a whole Bulk Data export, on Dask")
    panel.add_argument("export", nargs="?", help="a folder of Bulk Data NDJSON files (.ndjson or .ndjson.gz, split or "
                                                 "not), with its manifest.json if any; or --fhir-server")
    panel.add_argument("--fhir-server", help="export from this FHIR server (Bulk Data $export) into OUT/export, then "
                                              "evaluate it; https, or http to loopback")
    panel.add_argument("--group", help="with --fhir-server: the Group to export (the panel); default every Patient")
    panel.add_argument("--client-id", help="with --fhir-server: this service's SMART Backend Services client id")
    panel.add_argument("--private-key", help="with --client-id: its private key (PEM, RSA or EC P-384)")
    panel.add_argument("--key-id", help="with --client-id: the kid of that key in the JWK Set the server knows")
    panel.add_argument("--since", help="with --fhir-server: export only what changed since the last run (auto) or "
                                        "since an instant, merged into the panel's store in OUT/store; without it, "
                                        "a full export rebuilds the store")
    panel.add_argument("--out", default="worklist", help="folder for worklist.parquet, .csv, .html (default: "
                                                          "./worklist)")
    panel.add_argument("--now", help="evaluate as of this date or date-time (default: the clock)")
    panel.add_argument("--scheduler", help="address of a running Dask scheduler, tcp:// or tls:// (default: a local "
                                            "cluster on 127.0.0.1, mutual TLS with credentials made for the run)")
    panel.add_argument("--workers", type=int, help="worker processes of the local cluster (default: one per CPU)")
    panel.add_argument("--tls-ca-file", help="with a tls:// --scheduler: the CA certificate(s) (PEM) of the cluster "
                                              "(default: Dask's distributed.comm.tls.ca-file)")
    panel.add_argument("--tls-cert", help="with a tls:// --scheduler: this client's certificate (PEM), with its key "
                                           "unless --tls-key (default: distributed.comm.tls.client.cert)")
    panel.add_argument("--tls-key", help="the private key (PEM) of --tls-cert, if not in that file (default: "
                                          "distributed.comm.tls.client.key)")
    rules = commands.add_parser("rules", help="the rule set in PACING_CDS_RULES_DIR")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_commands.add_parser("check", help="validate rule files, parameters, facts and scenarios, the "
                                                    "patient texts and their reading level, and the examples the "
                                                    "rules own (fhir_examples/ beside the rules)")
    check.add_argument("--reading", action="store_true", help="print the reading level of every patient text, per "
                                                              "language, as a table")
    rules_commands.add_parser("test", help="run the scenarios and the examples the rules own; a line per rule")
    impact = rules_commands.add_parser("impact", help="what a rule change would change: every patient of a panel "
                                                      "(and every example) evaluated under the baseline and these "
                                                      "rules")
    impact.add_argument("--baseline", required=True, help="the rules before the change: a rules folder, or a git ref "
                                                          "(commit, branch, tag) of the repository holding --rules")
    impact.add_argument("--rules", help="the rules after the change (default: PACING_CDS_RULES_DIR)")
    impact.add_argument("--export", help="the panel: a folder of Bulk Data NDJSON files, or a worklist's store "
                                         "(OUT/store of pacing-cds worklist --fhir-server: last night's panel)")
    impact.add_argument("--fhir-server", help="the panel: export it from this FHIR server (Bulk Data) into OUT")
    impact.add_argument("--group", help="with --fhir-server: the Group to export")
    impact.add_argument("--client-id", help="with --fhir-server: SMART Backend Services client id")
    impact.add_argument("--private-key", help="with --client-id: its private key (PEM)")
    impact.add_argument("--key-id", help="with --client-id: the kid of that key")
    impact.add_argument("--examples", action="store_true", help="also compare every example request of the "
                                                                "repository (fhir_examples/ beside the rules)")
    impact.add_argument("--now", help="evaluate as of this date or date-time (default: the clock)")
    impact.add_argument("--out", default="impact", help="folder for impact.csv and impact.html (default: ./impact)")
    impact.add_argument("--fail-on", choices=("red-flag-lost",), action="append", default=[],
                        help="exit 3 when any patient or example loses a red flag under the new rules")
    impact.add_argument("--scheduler", help="address of a running Dask scheduler (default: a local cluster)")
    impact.add_argument("--workers", type=int, help="worker processes of the local cluster (default: one per CPU)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "settings":
        return show_settings()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"pacing-cds: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings)
    if args.command == "evaluate":
        return evaluate(settings, args.request, args.now, args.service)
    if args.command == "worklist":
        from cds.panel.command import bulk_args, worklist

        bulk = bulk_args(args, settings)
        return worklist(settings, args.export, args.out, args.now, args.scheduler, args.workers,
                        tls_ca_file=args.tls_ca_file, tls_cert=args.tls_cert, tls_key=args.tls_key, bulk=bulk)
    if args.command == "rules":
        if args.rules_command == "impact":
            from cds.panel.impact import impact_command

            return impact_command(settings, args)
        if args.rules_command == "check":
            return rules_check(settings, reading=args.reading)
        return rules_test(settings)
    if args.command == "report":
        from cds.reports.firing import firing_command

        return firing_command(settings, args.since, args.format, args.out)
    if args.command == "purge":
        if args.days is not None and args.days < 0:
            print("pacing-cds: --days must be 0 or more", file=sys.stderr)
            return 2
        return purge(settings, args.days)
    if args.now and not args.html:
        print("pacing-cds: --now goes with --html (the text report counts every card stored)", file=sys.stderr)
        return 2
    if args.html:
        from cds.reports.overrides import overrides_command

        return overrides_command(settings, args.html, args.now)
    return feedback_report(settings)


if __name__ == "__main__":
    sys.exit(main())
