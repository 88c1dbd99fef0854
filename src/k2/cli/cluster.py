"""`k2 feed` and `k2 ingest`: the cluster shape's two stages as processes of their own."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import typer

from k2.cli.common import (
    exit_now,
    positive,
    reported,
    run_until_signal,
    settings,
    setup_logging,
    stop_after,
)
from k2.instruments import load_instruments, resolve_venue

log = logging.getLogger("k2.cluster")


def feed(
    venue: list[str] = typer.Option(
        None,
        "--venue",
        metavar="VENUE",
        help="Capture this venue (repeat for several; default: every enabled one).",
    ),
    duration: float = typer.Option(
        None, help="Stop cleanly after this many seconds (default: until Ctrl-C)."
    ),
) -> None:
    """Capture trades from the venues and publish them to the Kafka bus (setting bus.*).

    Gap detection and REST repair run here. After a restart, each symbol resumes where the bus
    holds its last trade, so a kill -9 loses nothing: the downtime is repaired over REST. While
    the broker is down, messages wait in a bounded buffer (bus.producer_buffer_messages); once it
    is full, capture waits.
    """
    from k2.bus.client import ensure_topics
    from k2.bus.producer import BusSink
    from k2.bus.resume import resume_from_bus
    from k2.bus.status import Heartbeats, feed_snapshot
    from k2.bus.topics import trades_topic
    from k2.exchanges import make_adapter
    from k2.ingest.runner import build_feeds, describe_gap, http_client, run_feeds, stop_feeds
    from k2.ingest.state import ResumeState
    from k2.observe.process import serve_metrics

    with reported():
        positive(duration=duration)
        cfg = settings()
        setup_logging(cfg.log_level)
        instruments = load_instruments(cfg.instruments_file)
        chosen = {resolve_venue(v, instruments) for v in venue or []}
        mine = {
            v: syms
            for v, syms in instruments.items()
            if syms and cfg.venue(v).enabled and (not chosen or v in chosen)
        }
        if not mine:
            raise typer.BadParameter(
                "no enabled venue with symbols to capture", param_hint="--venue"
            )
        partitions = ensure_topics(cfg.bus)
        topic = trades_topic(cfg.bus.topic_prefix)
        resume = ResumeState()
        for v, syms in mine.items():
            got = resume_from_bus(
                cfg.bus,
                topic,
                partitions[topic],
                v,
                syms,
                cfg.ingest.recent_ids,
                make_adapter(v).contiguous_ids,
            )
            resume.cursors.update(got.cursors)
            resume.pending.update(got.pending)
            log.info("%s: resuming %d symbols from the bus", v, len(got.cursors.get(v, {})))

        async def main(stop: asyncio.Event) -> int:
            sink = BusSink(cfg.bus, partitions)
            sink.resume_from(resume)
            async with http_client() as http:
                feeds = build_feeds(cfg, mine, sink, http, resume)
                server = serve_metrics(cfg, feeds=feeds, producer=sink.stats)
                beats = Heartbeats(
                    cfg.bus, "feed", ",".join(sorted(mine)), lambda: feed_snapshot(sink, feeds)
                )
                feeds_stop, repair_stop = asyncio.Event(), asyncio.Event()
                async with asyncio.TaskGroup() as tg:
                    timer = tg.create_task(stop_after(stop, duration))
                    fatal = tg.create_task(_stop_on_fatal(sink, stop))
                    task = tg.create_task(run_feeds(feeds, feeds_stop, repair_stop))
                    await stop.wait()
                    started = time.monotonic()
                    grace = cfg.shutdown_grace_s
                    left = await stop_feeds(
                        feeds, feeds_stop, repair_stop, task, started + grace * 0.6
                    )
                    timer.cancel()
                    fatal.cancel()
                unacked = await sink.close(started + grace - 0.5)
                # the last heartbeat ("stopped"), within what is left of the grace period
                left_s = started + grace - time.monotonic()
                await asyncio.to_thread(beats.close, max(0.1, min(3.0, left_s)))
                if server is not None:
                    server.shutdown()
            for gap in left:
                log.warning("gap still open at stop: %s", describe_gap(gap))
            return 1 if sink.stats.fatal or unacked else 0

        code = run_until_signal(main)
    if code:
        raise typer.Exit(code)


async def _stop_on_fatal(sink: object, stop: asyncio.Event) -> None:
    from k2.bus.producer import BusSink

    assert isinstance(sink, BusSink)
    while not stop.is_set():
        if sink.stats.fatal:
            log.error("bus: the producer cannot go on (%s); stopping", sink.stats.fatal)
            stop.set()
        await asyncio.sleep(0.5)


def ingest(
    consumers: int = typer.Option(
        None, min=1, help="Consumer-group members in this process (setting bus.consumers)."
    ),
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Where an embedded store lives (setting data_dir)."
    ),
    duration: float = typer.Option(
        None, help="Stop cleanly after this many seconds (default: until Ctrl-C)."
    ),
) -> None:
    """Consume the Kafka bus into the hot store (setting hotstore.url), exactly once.

    Run as many as the topics have partitions; they share the partitions as one consumer group
    (bus.group_id). A batch is an offset range of one partition, written with a deduplication
    token, so a batch delivered again after a crash or a rebalance is dropped by the store.
    """
    from k2.bus.client import ensure_topics
    from k2.bus.consumer import LEAVE_S, IngestMember
    from k2.bus.status import Heartbeats
    from k2.hotstore.owner import OwnedStore
    from k2.hotstore.resume import last_sequence
    from k2.hotstore.store import check_data_dir
    from k2.hotstore.writer import StoreWriter
    from k2.observe.process import serve_metrics

    with reported():
        positive(duration=duration)
        overrides = {"data_dir": data_dir} if data_dir is not None else {}
        cfg = settings(**overrides)
        setup_logging(cfg.log_level)
        members = consumers or cfg.bus.consumers
        check_data_dir(cfg.data_dir)
        ensure_topics(cfg.bus)
        owner = OwnedStore(cfg.data_dir, cfg.hotstore, "k2 ingest", repair=False)
        clean = False
        stuck: list[str] = []  # members that did not stop
        try:
            writer = StoreWriter(
                owner.store,
                cfg.writer,
                last_sequence(owner.store),
                retention_days=cfg.hotstore.shortest_retention_days,
            )
            group = [
                IngestMember(cfg.bus, cfg.writer, owner.store, writer, f"k2-ingest-{i + 1}")
                for i in range(members)
            ]
            server = serve_metrics(cfg, writer=writer.stats, consumers=[m.stats for m in group])
            beats = Heartbeats(
                cfg.bus,
                "ingest",
                cfg.bus.group_id,
                lambda: {"consumers": [m.stats for m in group], "writer": writer.stats},
            )

            async def main(stop: asyncio.Event) -> list[str]:
                """Run the members until a signal; the names of those that did not stop."""
                halt = threading.Event()
                threads = [
                    threading.Thread(target=m.run, args=(halt,), name=m.stats.member, daemon=True)
                    for m in group
                ]
                for t in threads:
                    t.start()
                timer = asyncio.create_task(stop_after(stop, duration))
                # threads set no asyncio event: look every 0.2 s
                while not stop.is_set() and all(t.is_alive() for t in threads):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                halt.set()
                timer.cancel()
                # the last cuts, their commits, and leaving the group
                deadline = time.monotonic() + cfg.shutdown_grace_s + LEAVE_S
                for t in threads:
                    await asyncio.to_thread(t.join, max(0.0, deadline - time.monotonic()))
                return [t.name for t in threads if t.is_alive()]

            stuck = run_until_signal(main)
            beats.close()
            if server is not None:
                server.shutdown()
            clean = not stuck
        finally:
            owner.close(clean)
        if stuck:  # what they wrote is committed, or covered by its recorded cut
            log.error("ingest: %s did not leave the group in time; exiting", ", ".join(stuck))
            exit_now(1)  # not waiting for their threads


def api(
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Where an embedded store lives (setting data_dir)."
    ),
    port: int = typer.Option(
        None,
        "--port",
        min=0,
        max=65535,
        help="Serve on this port (setting api.port, default 8000; 0: any free).",
    ),
    duration: float = typer.Option(
        None, help="Stop cleanly after this many seconds (default: until Ctrl-C)."
    ),
) -> None:
    """Serve the HTTP API, /health and /metrics on their own, against the hot store
    (setting hotstore.url) and the archive: the cluster shape's API (k2 up serves its own).

    /health is k2 health's report, the bus's rows included when bus.bootstrap_servers is set;
    an archive flow asked for over the API runs in this process, and skips while another run
    of it (k2 flows serve) holds the archive.
    """
    from k2.api.app import create_app
    from k2.api.process import ApiProcess
    from k2.api.server import ApiServer
    from k2.cli.common import prefect_env
    from k2.cli.health import cluster_shape
    from k2.flows.runtime import using
    from k2.hotstore.store import check_data_dir

    with reported():
        positive(duration=duration)
        cfg = settings(**({"data_dir": data_dir} if data_dir is not None else {}))
        if port is not None:
            cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"port": port})})
        setup_logging(cfg.log_level)
        check_data_dir(cfg.data_dir)
        prefect_env(cfg.data_dir)
        proc = ApiProcess(cfg, load_instruments(cfg.instruments_file), cluster_shape(cfg))

        async def main(stop: asyncio.Event) -> None:
            server = ApiServer(cfg.api)  # a busy port or a bad host fails here, the store untouched
            try:
                await asyncio.to_thread(proc.open)
                assert proc.archive is not None
                with using(proc.archive):
                    url = await server.start(create_app(proc))
                    proc.hold(url)
                    print(f"k2 api: serving on {url}", flush=True)
                    await stop_after(stop, duration)
                    await stop.wait()
                    await server.stop(timeout=cfg.shutdown_grace_s)
            finally:
                await server.stop(timeout=1.0)
                await asyncio.to_thread(proc.close)

        run_until_signal(main)
