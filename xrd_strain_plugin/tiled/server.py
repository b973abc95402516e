"""The Tiled catalog as deployed for live results (used from ``deploy/tiled/config.yml``).

``tree: xrd_strain_plugin.tiled.server:catalog`` in a ``tiled serve config`` file builds
Tiled's own SQL catalog (:func:`tiled.catalog.from_uri`, same arguments) and, when the
catalog is SQLite, sets ``PRAGMA journal_mode=WAL`` and ``PRAGMA synchronous`` on every
connection it opens.

Why: a catalog Tiled creates is in SQLite's rollback-journal mode with ``synchronous=FULL``,
which syncs the database on every commit, and every node Tiled creates is a commit; on the
project's machine that sync was the largest single cost of writing a result (a lone result's
write: p50 196 ms with FULL, 61 ms with WAL + NORMAL, load average 8; docs/bench_live.md).
``NORMAL`` in WAL mode keeps the database consistent after any crash and loses no committed
transaction when the *process* dies; only an operating-system crash or power cut can lose the
last transactions before a checkpoint (SQLite's documentation). Results are still in the
listener's spool until Tiled acknowledged them, so what such a loss could take is the last
few seconds of results written before the power cut. Use ``synchronous: FULL`` where that is
not acceptable, or PostgreSQL.

Only this module is imported by the server; it pulls in nothing else of the plugin.
"""

from __future__ import annotations

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_JOURNAL_MODES = ("WAL", "DELETE", "TRUNCATE", "PERSIST")
_mode = {"synchronous": None, "journal_mode": None}


def _set_synchronous(dbapi_connection, connection_record):
    kind = type(dbapi_connection)
    if _mode["synchronous"] and "sqlite" in f"{kind.__module__}.{kind.__name__}".lower():
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA journal_mode={_mode['journal_mode']}")
        cursor.execute(f"PRAGMA synchronous={_mode['synchronous']}")
        cursor.close()


def catalog(uri, *, synchronous: str = "NORMAL", journal_mode: str = "WAL", **kwargs):
    """Tiled's SQL catalog (``tiled.catalog.from_uri(uri, **kwargs)``), SQLite tuned for writes.

    Parameters
    ----------
    uri : str
        Catalog database (``sqlite:///path/catalog.db`` or ``postgresql+asyncpg://...``).
    synchronous : str
        SQLite ``PRAGMA synchronous`` (``NORMAL`` or ``FULL``); ignored for other databases.
    journal_mode : str
        SQLite ``PRAGMA journal_mode``: ``WAL`` (default; a catalog Tiled creates is left in
        rollback-journal mode, where even ``NORMAL`` syncs every commit).
    **kwargs
        Passed to :func:`tiled.catalog.from_uri` (``writable_storage``, ``init_if_not_exists``...).
    """
    if "${" in str(uri):  # tiled's config left an unset variable as it was
        raise ValueError(
            f"catalog uri {uri!r}: set the environment variable it names "
            "(deploy/tiled/tiled.env.example: XRD_STRAIN_TILED_CATALOG)"
        )
    mode, journal = str(synchronous).upper(), str(journal_mode).upper()
    if mode not in _SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, got {synchronous!r}")
    if journal not in _JOURNAL_MODES:
        raise ValueError(f"journal_mode must be one of {_JOURNAL_MODES}, got {journal_mode!r}")
    _mode["journal_mode"] = journal
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from tiled.catalog import from_uri

    _mode["synchronous"] = mode
    if not event.contains(Engine, "connect", _set_synchronous):
        event.listen(Engine, "connect", _set_synchronous)
    return from_uri(uri, **kwargs)
