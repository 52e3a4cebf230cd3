"""The ``baton`` command: run the system, stream a demo through it, mint tokens, list and replay dead letters,
rebuild metrics' read model."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import httpx

from baton.auth import SCOPES, issue_token
from baton.bus import Bus, make_bus
from baton.dlq import dead_letters, replay
from baton.events import DLQ_SUFFIX, TOPICS
from baton.settings import Settings


@dataclass(frozen=True)
class ServiceProcess:
    """How ``baton run`` starts one service."""

    name: str
    factory: str
    offset: int


SERVICES = (
    ServiceProcess("lead-ingest", "baton_lead_ingest.app:create_app", 0),
    ServiceProcess("scoring", "baton_scoring.app:create_app", 1),
    ServiceProcess("handoff", "baton_handoff.app:create_app", 2),
    ServiceProcess("metrics", "baton_metrics.app:create_app", 3),
)
DEFAULT_BASE_PORT = 8001
READY_TIMEOUT_SECONDS = 90.0


def wait_until_ready(
    urls: Mapping[str, str], processes: Mapping[str, subprocess.Popen[bytes]], *, timeout: float
) -> None:
    """Waits until every URL's ``/readyz`` answers 200.

    Args:
        urls: Service name to base URL.
        processes: The processes serving them, by name; one exiting ends the wait.
        timeout: Seconds to wait at most.

    Raises:
        RuntimeError: A process exited, or a service was not ready in time.
    """
    deadline = time.monotonic() + timeout
    pending = dict(urls)
    with httpx.Client(timeout=2) as client:
        while pending:
            for name, process in processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {process.returncode} while starting")
            for name, url in list(pending.items()):
                try:
                    if client.get(f"{url}/readyz").status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f} s: {', '.join(pending)}")
            time.sleep(0.2)


def stop_processes(
    processes: Iterable[subprocess.Popen[bytes]], *, signum: int = signal.SIGTERM, grace: float = 15.0
) -> list[int]:
    """Signals processes to stop, kills those still running after ``grace`` seconds.

    Args:
        processes: The processes.
        signum: The signal asking them to stop.
        grace: Seconds they have, all together, to exit.

    Returns:
        Their exit codes, in order.
    """
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signum)
    deadline = time.monotonic() + grace
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return codes


def run(args: argparse.Namespace) -> int:
    """Starts the four services as four processes and keeps them up until Ctrl-C."""
    settings = Settings()
    settings.signing_secret()  # one secret for all four, created before any starts
    host = args.host or settings.host
    urls: dict[str, str] = {}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    started = time.monotonic()
    try:
        for service in SERVICES:
            port = args.base_port + service.offset
            urls[service.name] = f"http://{host}:{port}"
            env = {**os.environ, "BATON_PORT": str(port), "BATON_HOST": host}
            processes[service.name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    service.factory,
                    "--host",
                    host,
                    "--port",
                    str(port),
                    "--no-access-log" if args.quiet else "--access-log",
                ],
                env=env,
            )
        wait_until_ready(urls, processes, timeout=READY_TIMEOUT_SECONDS)
        print(f"\nBaton is up in {time.monotonic() - started:.1f} s on the {settings.bus} bus:", flush=True)
        for name, url in urls.items():
            print(f"  {name:<12} {url}   (API docs: {url}/docs)", flush=True)
        print("Mint a token with `baton token issue --scope admin`; stream sample leads with `baton demo`.")
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    print(f"{name} exited with code {process.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0
    except RuntimeError as exc:
        print(f"baton run: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_processes(processes.values())


def token_issue(args: argparse.Namespace) -> int:
    """Prints a signed token for the scopes, rep and team given."""
    scopes = [s for value in args.scope for s in value.replace(",", " ").split()]
    try:
        token = issue_token(
            Settings().signing_secret(),
            scopes=scopes,
            rep_id=args.rep,
            team=args.team,
            ttl=timedelta(days=args.ttl_days),
        )
    except ValueError as exc:
        print(f"baton token issue: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


_FIRST = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Radia", "Tim")
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Perlman", "Lee")
_TITLES = ("CEO", "VP Marketing", "Director of Sales", "Engineer", "Analyst", "Head of Growth", "Intern")


def demo(args: argparse.Namespace) -> int:
    """Seeds a few reps and streams sample leads through a running system."""
    secret = Settings().signing_secret()
    admin = {"Authorization": f"Bearer {issue_token(secret, scopes=['admin'])}"}
    rng = random.Random(args.seed)
    with httpx.Client(timeout=10) as client:
        for rep_id, name, team in (("rep-ana", "Ana", "emea"), ("rep-bo", "Bo", "amer"), ("rep-cy", "Cy", "amer")):
            response = client.post(
                f"{args.handoff_url}/v1/reps", json={"rep_id": rep_id, "name": name, "team": team}, headers=admin
            )
            if response.status_code not in (201, 409):
                print(f"could not create rep {rep_id}: {response.status_code} {response.text}", file=sys.stderr)
                return 1
        for i in range(args.leads):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            lead = {
                "email": f"{first}.{last}.{i}.{rng.randrange(10**6)}@example.com".lower(),
                "first_name": first,
                "last_name": last,
                "company": f"{last} Labs",
                "title": rng.choice(_TITLES),
                "company_size": rng.choice((10, 120, 450, 2500)),
                "source": rng.choice(("website", "webinar", "paid-search")),
                "campaign": rng.choice(("spring-launch", "retargeting")),
                "activities": [{"type": "demo_request"}] if rng.random() < 0.3 else [],
            }
            response = client.post(f"{args.ingest_url}/v1/leads", json=lead, headers=admin)
            print(f"{response.status_code} {lead['title']:<18} {response.json().get('lead_id', response.text)}")
        print(
            f"\nPosted {args.leads} leads. Assignments: {args.handoff_url}/v1/assignments  "
            f"KPIs: {args.metrics_url}/v1/kpis"
        )
    return 0


async def _with_bus(work: Callable[[Bus], Awaitable[int]]) -> int:
    bus = make_bus(Settings())
    await bus.start()
    try:
        return await work(bus)
    finally:
        await bus.stop()


def _chosen_topics(args: argparse.Namespace) -> tuple[str, ...]:
    topic = (args.topic or "").removesuffix(DLQ_SUFFIX)
    return (topic,) if topic else TOPICS


def dlq_list(args: argparse.Namespace) -> int:
    """Prints the events parked on the dead-letter queues."""

    async def work(bus: Bus) -> int:
        letters = await dead_letters(bus, topics=_chosen_topics(args))
        for letter in letters:
            print(
                f"{letter.id}  group={letter.consumer_group}  event={letter.event_id}  type={letter.event_type}  "
                f"attempts={letter.attempts}  error={letter.error}"
            )
        print(f"{len(letters)} parked event(s)", file=sys.stderr)
        return 0

    return asyncio.run(_with_bus(work))


def dlq_replay(args: argparse.Namespace) -> int:
    """Puts parked events back on their topics for the consumer group that parked them."""

    async def work(bus: Bus) -> int:
        letters = await dead_letters(bus, topics=_chosen_topics(args))
        if args.id:
            chosen = [letter for letter in letters if letter.id in args.id or letter.event_id in args.id]
            missing = set(args.id) - {letter.id for letter in chosen} - {letter.event_id for letter in chosen}
            if missing:
                print(
                    f"baton dlq replay: not parked (or already replayed): {', '.join(sorted(missing))}", file=sys.stderr
                )
                return 1
            letters = chosen
        print(f"replayed {await replay(bus, letters)} event(s)")
        return 0

    return asyncio.run(_with_bus(work))


def metrics_rebuild(args: argparse.Namespace) -> int:
    """Rebuilds metrics' read model from the event log and swaps it in, while metrics runs."""
    # metrics is a service, not part of the shared library: imported only where it is installed.
    try:
        from baton_metrics.rebuild import RebuildRefused, rebuild_read_model
        from baton_metrics.settings import MetricsSettings
    except ImportError:
        print("baton metrics rebuild: the metrics service is not installed here", file=sys.stderr)
        return 1
    try:
        report = asyncio.run(rebuild_read_model(MetricsSettings()))
    except RebuildRefused as exc:
        print(f"baton metrics rebuild: {exc}", file=sys.stderr)
        return 1
    for topic, records in report.records.items():
        print(f"replayed {records} event(s) from {topic}")
    rate = sum(report.records.values()) / report.seconds if report.seconds else 0.0
    print(
        f"{report.events} distinct event(s) in the rebuilt read model ({report.caught_up} arrived during the "
        f"rebuild); swapped in after {report.seconds:.1f} s ({rate:.0f} events/s)"
    )
    if report.not_applied:
        print(
            f"{report.not_applied} event(s) failed as they did live and stay parked: see `baton dlq list`",
            file=sys.stderr,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``baton`` command line."""
    parser = argparse.ArgumentParser(prog="baton", description="Baton: lead handoff from marketing to sales.")
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser("run", help="start all four services (embedded default unless BATON_BUS=kafka)")
    run_parser.add_argument("--host", default=None, help="bind address (default BATON_HOST or 127.0.0.1)")
    run_parser.add_argument(
        "--base-port", type=int, default=DEFAULT_BASE_PORT, help="lead-ingest's port; the others follow"
    )
    run_parser.add_argument("--quiet", action="store_true", help="no access log")
    run_parser.set_defaults(func=run)

    demo_parser = commands.add_parser("demo", help="seed reps and stream sample leads through a running system")
    demo_parser.add_argument("--leads", type=int, default=20)
    demo_parser.add_argument("--seed", type=int, default=None)
    demo_parser.add_argument("--ingest-url", default="http://127.0.0.1:8001")
    demo_parser.add_argument("--handoff-url", default="http://127.0.0.1:8003")
    demo_parser.add_argument("--metrics-url", default="http://127.0.0.1:8004")
    demo_parser.set_defaults(func=demo)

    token_parser = commands.add_parser("token", help="bearer tokens")
    token_commands = token_parser.add_subparsers(dest="token_command", required=True)
    issue_parser = token_commands.add_parser("issue", help="mint a token signed with this installation's secret")
    issue_parser.add_argument("--scope", action="append", required=True, help=f"one or more of {', '.join(SCOPES)}")
    issue_parser.add_argument("--rep", default=None, help="limit the token to one rep's leads")
    issue_parser.add_argument("--team", default=None, help="limit the token to one team's leads")
    issue_parser.add_argument("--ttl-days", type=float, default=30.0)
    issue_parser.set_defaults(func=token_issue)

    dlq_parser = commands.add_parser("dlq", help="events parked on the dead-letter queues (BATON_BUS picks the bus)")
    dlq_commands = dlq_parser.add_subparsers(dest="dlq_command", required=True)
    list_parser = dlq_commands.add_parser("list", help="list parked events that were not replayed yet")
    list_parser.add_argument("--topic", default=None, help="only this topic's DLQ, e.g. leads.scored")
    list_parser.set_defaults(func=dlq_list)
    replay_parser = dlq_commands.add_parser("replay", help="put parked events back; each is applied exactly once")
    replay_parser.add_argument("--topic", default=None, help="only this topic's DLQ, e.g. leads.scored")
    replay_parser.add_argument(
        "--id", action="append", default=None, help="an entry id or event id from `baton dlq list` (repeatable)"
    )
    replay_parser.set_defaults(func=dlq_replay)

    metrics_parser = commands.add_parser("metrics", help="metrics' read model (BATON_* settings as the services)")
    metrics_commands = metrics_parser.add_subparsers(dest="metrics_command", required=True)
    rebuild_parser = metrics_commands.add_parser(
        "rebuild", help="replay the event log into a fresh read model and swap it in; safe while metrics runs"
    )
    rebuild_parser.set_defaults(func=metrics_rebuild)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``baton`` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
