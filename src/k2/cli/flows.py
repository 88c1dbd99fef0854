"""`k2 flows serve`: the archive flows as Prefect deployments, served by this process.

The cluster shape's scheduler: a Prefect server (PREFECT_API_URL) holds the offload, maintenance
and reconcile deployments and their schedules (archive.*_cron); this process registers them and
runs each flow run the server hands it, in a fresh subprocess that opens the hot store and the
archive the settings name (k2.flows.deployed). A deployment allows one run at a time, and a run
due while another is in progress waits its turn, so no two runs of one flow overlap. The
embedded shape never uses this: `k2 up` runs the same flows in its own process, since chDB opens
a data directory in one process only.
"""

from __future__ import annotations

import logging
import os
import signal

import typer

from k2.cli.common import STATE, reported, settings, setup_logging
from k2.errors import InputError
from k2.settings import CONFIG_ENV

log = logging.getLogger("k2.flows")
app = typer.Typer(
    help="The archive flows as Prefect deployments (the cluster shape).", no_args_is_help=True
)


@app.command()
def serve() -> None:
    """Register the offload, maintenance and reconcile deployments with their schedules
    (archive.offload_cron, maintenance_cron, reconcile_cron) on the Prefect server at
    PREFECT_API_URL, and run their flow runs until Ctrl-C or SIGTERM. Runs of one flow never
    overlap."""
    with reported():
        cfg = settings()
        setup_logging(cfg.log_level)
        if not os.environ.get("PREFECT_API_URL"):
            raise InputError(
                "k2 flows serve needs a Prefect server: set PREFECT_API_URL "
                "(for example http://prefect:4200/api)"
            )
        # Each flow run is a new process that loads the settings again: the same file, and the
        # same data directory however relative it was.
        if STATE.config is not None:
            os.environ[CONFIG_ENV] = str(STATE.config.resolve())
        os.environ["K2_DATA_DIR"] = str(cfg.data_dir.resolve())
        url = cfg.hotstore.url
        if url is None or url.get_secret_value().startswith("chdb:"):
            log.warning(
                "flows: the hot store is embedded chDB, which one process opens at a time: a "
                "flow run fails while k2 up, k2 ingest or another run holds it; give "
                "hotstore.url a ClickHouse server"
            )
        from prefect import serve as prefect_serve
        from prefect.client.schemas.objects import (
            ConcurrencyLimitConfig,
            ConcurrencyLimitStrategy,
        )

        from k2.flows import deployed

        one_at_a_time = ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        )
        a = cfg.archive
        deployments = [
            getattr(deployed, name).to_deployment(
                name=name,
                cron=cron if a.schedule_enabled else None,
                concurrency_limit=one_at_a_time,
                tags=["k2", "archive"],
            )
            for name, cron in a.crons.items()
        ]
        log.info("flows: serving %s", ", ".join(a.crons))
        # Prefect's runner stops on KeyboardInterrupt. Ctrl-C raises it even when the process was
        # started with SIGINT ignored (a background job of a non-interactive shell, which its
        # children inherit), and so does SIGTERM (docker stop), which would otherwise kill it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        prefect_serve(*deployments, print_starting_message=False)
