"""The `pacing-cds` command: serve, feedback report, settings."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from cds.settings import Settings, SettingsError, load_settings, settings_table


def _bind(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{host}:{settings.port}"


def serve(settings: Settings) -> int:
    """Run the service under gunicorn (gthread workers) on HOST:PORT."""
    from gunicorn.app.base import BaseApplication

    from cds import create_app
    from cds.store import Store

    store = Store(settings.database_url)
    store.create_schema()  # once, before the workers start
    store.close()

    class Server(BaseApplication):  # type: ignore[misc]
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
            return create_app(settings)

    print(f"pacing-cds serving {settings.base_url}/cds-services on {_bind(settings)} "
          f"({settings.workers} workers x {settings.threads} threads, env {settings.env})", file=sys.stderr)
    Server().run()
    return 0


def feedback_report(settings: Settings, out: Any = sys.stdout) -> int:
    """Accepted and overridden counts per service and card topic, then the override reasons."""
    from sqlalchemy.engine import make_url

    from cds.store import Store

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
    return feedback_report(settings)


if __name__ == "__main__":
    sys.exit(main())
