"""The `pacing-cds` command: serve, feedback report, settings."""

from __future__ import annotations

import argparse
import gc
import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from cds.settings import Settings, SettingsError, load_settings, settings_table


def _bind(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{host}:{settings.port}"


def serve(settings: Settings) -> int:
    """Run the service under gunicorn (gthread workers) on HOST:PORT."""
    from gunicorn.app.base import BaseApplication

    from cds import create_app
    from cds.store.database import Store

    knowledge = check_rules(settings)  # refuse to start on broken knowledge, before any worker boots
    if knowledge is None:
        return 2
    store = Store(settings.database_url)
    store.create_schema()  # once, before the workers start
    store.close()

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", [_bind(settings)])
            self.cfg.set("workers", settings.workers)
            self.cfg.set("threads", settings.threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("proc_name", "pacing-cds")
            self.cfg.set("loglevel", settings.log_level.lower())
            if "control_socket_disable" in self.cfg.settings:
                # A shared control socket in $HOME would let one instance's tooling reach another.
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            app = create_app(settings)
            # Everything built so far lives as long as the worker: move it out of the collector's sight, so that
            # full collections walk only what requests allocate (they took tens of ms, the p99 of a call).
            gc.collect()
            gc.freeze()
            return app

    print(f"pacing-cds serving {settings.base_url}/cds-services on {_bind(settings)} "
          f"({settings.workers} workers x {settings.threads} threads, env {settings.env})", file=sys.stderr)
    Server().run()
    return 0


def feedback_report(settings: Settings, out: Any = sys.stdout) -> int:
    """Accepted and overridden counts per service and card topic, then the override reasons."""
    from sqlalchemy.engine import make_url

    from cds.store.database import Store

    store = Store(settings.database_url)
    try:
        store.create_schema()
        rows = store.feedback_report()
    finally:
        store.close()
    url = make_url(settings.database_url).render_as_string(hide_password=True)
    print(f"Feedback report ({url})", file=out)
    if not rows:
        print("No feedback stored.", file=out)
        return 0
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"accepted": 0, "overridden": 0})
    reasons: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in rows:
        key = (row["service"], row["topic"] or "(card not issued here)")
        counts[key][row["outcome"]] += row["count"]
        if row["outcome"] == "overridden":
            reason = row["reason_display"] or row["reason_code"] or "(no reason given)"
            if row["reason_display"] and row["reason_code"]:
                reason = f"{row['reason_display']} [{row['reason_code']}]"
            reasons[(*key, reason)] += row["count"]
    width_s = max(len("service"), *(len(s) for s, _ in counts))
    width_t = max(len("topic"), *(len(t) for _, t in counts))
    print(f"{'service':<{width_s}}  {'topic':<{width_t}}  {'accepted':>8}  {'overridden':>10}", file=out)
    for (service, topic), c in sorted(counts.items()):
        print(f"{service:<{width_s}}  {topic:<{width_t}}  {c['accepted']:>8}  {c['overridden']:>10}", file=out)
    total_a = sum(c["accepted"] for c in counts.values())
    total_o = sum(c["overridden"] for c in counts.values())
    print(f"{'total':<{width_s}}  {'':<{width_t}}  {total_a:>8}  {total_o:>10}", file=out)
    if reasons:
        print("\nOverride reasons", file=out)
        for (service, topic, reason), n in sorted(reasons.items()):
            print(f"{service:<{width_s}}  {topic:<{width_t}}  {n:>4}  {reason}", file=out)
    return 0


def check_rules(settings: Settings, out: Any = sys.stderr) -> Any:
    """Load and validate rules/; print every problem and return None when there are any."""
    from cds.engine import RuleError, load_knowledge
    from cds.services import by_id

    try:
        return load_knowledge(settings.rules_path, by_id())
    except RuleError as exc:
        print(f"pacing-cds: {len(exc.problems)} problem(s) in {settings.rules_path}:", file=out)
        for problem in exc.problems:
            print(f"  {problem}", file=out)
        return None


def rules_check(settings: Settings, out: Any = sys.stdout) -> int:
    knowledge = check_rules(settings)
    if knowledge is None:
        return 1
    print(f"{knowledge.info.name} {knowledge.version}: {len(knowledge.rules)} rules, "
          f"{len(knowledge.parameters)} parameters, {len(knowledge.scenarios)} scenarios, "
          f"services {', '.join(sorted(knowledge.services))}: OK", file=out)
    return 0


def rules_test(settings: Settings, out: Any = sys.stdout) -> int:
    """Run every scenario; one line per rule, then the failures, then a closing count."""
    from cds.engine import RuleEngine
    from cds.engine.scenarios import run_scenarios

    knowledge = check_rules(settings)
    if knowledge is None:
        return 1
    results = run_scenarios(knowledge, RuleEngine(knowledge))
    width = max(len(c.rule.id) for c in knowledge.rules)
    for compiled in knowledge.rules:
        mine = [r for r in results if r.scenario.rule == compiled.rule.id]
        failed = [r for r in mine if not r.ok]
        fires = sum(1 for r in mine if r.scenario.fires)
        status = "FAIL" if failed else "ok"
        print(f"{status:<4}  {compiled.rule.id:<{width}}  v{compiled.rule.version}  {len(mine)} scenarios "
              f"({fires} fire, {len(mine) - fires} do not)  {compiled.file}", file=out)
        for result in failed:
            print(f"      - {result.scenario.name!r} [{result.service}]: {result.problem}", file=out)
    passed = sum(1 for r in results if r.ok)
    print(f"{passed} passed, {len(results) - passed} failed", file=out)
    return 0 if passed == len(results) else 1


HOOK_SERVICES = {"patient-view": "pacing-review", "order-select": "exercise-order-select",
                 "order-sign": "exercise-order-sign"}


def evaluate(settings: Settings, path: str, now_text: str | None, service_id: str | None,
             out: Any = sys.stdout) -> int:
    """Evaluate a CDS Hooks request file in-process; print the cards and the trace."""
    import json
    import textwrap
    from datetime import datetime

    from pydantic import ValidationError

    from cds.engine import RuleEngine
    from cds.errors import CdsError
    from cds.fhir.client import FhirClient
    from cds.fhir.resolver import resolve
    from cds.hooks.models import CdsRequest
    from cds.services import by_id

    knowledge = check_rules(settings)
    if knowledge is None:
        return 2
    try:
        with open(path, encoding="utf-8") as handle:
            body = json.loads(handle.read())
        request = CdsRequest.model_validate(body)
        now = datetime.fromisoformat(now_text.replace("Z", "+00:00")) if now_text else \
            settings.now or datetime.now(UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
    except (OSError, ValueError, ValidationError) as exc:
        print(f"pacing-cds: cannot read {path}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    service = by_id().get(service_id or HOOK_SERVICES.get(request.hook, ""))
    if service is None:
        print(f"pacing-cds: no service for hook {request.hook!r}; name one with --service", file=sys.stderr)
        return 2
    fhir = FhirClient(settings.fhir_timeout_s, settings.fhir_max_pages)
    try:
        context = service.context_model.model_validate(request.context)
        data = resolve(service.templates, request, context.patientId, fhir, service.optional_keys)
        outcome = service.handler(service.id, service.hook, request, context, data, RuleEngine(knowledge), now)
    except (CdsError, ValidationError) as exc:
        print(f"pacing-cds: {getattr(exc, 'message', str(exc).splitlines()[0])}", file=sys.stderr)
        return 1
    finally:
        fhir.close()
    print(f"{service.id} ({service.hook}) for Patient/{context.patientId} as of {now.isoformat()}", file=out)
    print(f"{knowledge.info.name} {knowledge.version}\n", file=out)
    cards = outcome.response.cards
    if not cards:
        print("No cards: nothing to recommend.\n", file=out)
    for card in cards:
        topic = card.source.topic.code if card.source.topic else "?"
        print(f"[{card.indicator}] {topic}: {card.summary}", file=out)
        for suggestion in card.suggestions or []:
            actions = ", ".join(f"{a.type} {a.resource['resourceType'] if a.resource else a.resourceId}"
                                for a in suggestion.actions or [])
            print(f"    suggestion: {suggestion.label} ({actions})", file=out)
        print(textwrap.indent(card.detail or "", "    | "), file=out)
        print(file=out)
    print("Trace", file=out)
    for fact in outcome.facts:
        print(f"    fact   {json.dumps(fact, separators=(', ', ': '))}", file=out)
    for fired in outcome.evaluation.trace:
        params = ", ".join(f"{k}={v}" for k, v in fired.parameters.items())
        print(f"    fired  {fired.rule_id} v{fired.rule_version} -> {fired.code}: {fired.outcome}"
              + (f" [{params}]" if params else ""), file=out)
    for key, info in data.summary().items():
        print(f"    data   {key}: {info['count']} from {info['source']}"
              + (f" ({'; '.join(info['notes'])})" if info.get("notes") else ""), file=out)
    for skipped in outcome.record.skipped:
        print(f"    skipped {skipped}", file=out)
    return 0


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
    feedback_commands.add_parser("report", help="accepted / overridden counts per service and card topic")
    commands.add_parser("settings", help="list the PACING_CDS_* settings with their defaults")
    evaluate_cmd = commands.add_parser("evaluate", help="evaluate a CDS Hooks request file: cards and trace")
    evaluate_cmd.add_argument("request", help="a CDS Hooks request (JSON)")
    evaluate_cmd.add_argument("--now", help="evaluate as of this date or date-time (default: the clock)")
    evaluate_cmd.add_argument("--service", help="service id (default: the one for the request's hook)")
    panel = commands.add_parser("worklist", help="the pacing worklist of a whole Bulk Data export, on Dask")
    panel.add_argument("export", help="a folder of Bulk Data NDJSON files (.ndjson or .ndjson.gz, split or not)")
    panel.add_argument("--out", default="worklist", help="folder for worklist.parquet, .csv, .html (default: "
                                                          "./worklist)")
    panel.add_argument("--now", help="evaluate as of this date or date-time (default: the clock)")
    panel.add_argument("--scheduler", help="address of a running Dask scheduler (default: a local cluster)")
    panel.add_argument("--workers", type=int, help="worker processes of the local cluster (default: one per CPU)")
    rules = commands.add_parser("rules", help="the rule set in PACING_CDS_RULES_DIR")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    rules_commands.add_parser("check", help="validate rule files, parameters, facts and scenarios")
    rules_commands.add_parser("test", help="run the scenarios; a line per rule")
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
        from cds.panel.command import worklist

        return worklist(settings, args.export, args.out, args.now, args.scheduler, args.workers)
    if args.command == "rules":
        return rules_check(settings) if args.rules_command == "check" else rules_test(settings)
    return feedback_report(settings)


if __name__ == "__main__":
    sys.exit(main())
