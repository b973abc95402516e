"""Write :class:`~xrd_strain_plugin.results.ResultRecord` objects to Tiled (layout v3), idempotently.

Cost per result, in HTTP requests (each ~15-40 ms of Tiled server time on a 2-core machine):
one request creates the result node with its full metadata; the arrays of every result written
together go up in one request into an arrays table created ahead of time (off the critical path,
:meth:`TiledResultsWriter.prepare`). A batch of ``k`` results therefore costs ``k + 1`` requests,
``k + 2`` when no table was ready, until it is readable. Each result's own ``profile`` and
``curve`` tables (four requests) follow: at once with ``tables="now"`` (the default), or, for the
live path (``tables="deferred"``), when the writer is idle (:meth:`TiledResultsWriter.prepare`
without a node), so that a burst is written at the rate of the first part.

Order within a batch: arrays first, then the nodes, so a result that queries can see has its
arrays readable.

Idempotent: node keys come from the raw run (uid, curve index); a node that exists already (a
replay after a crash between the write and the removal of the spooled copy) gets its metadata
replaced, pointing at the arrays just written, and keeps its refinement state. So spool replay is
exactly-once per raw run.

The hot path talks to Tiled's HTTP API directly with the client's connection (authentication,
connection pool): the Tiled client would add a request per node (it reads what it creates) and
milliseconds of client-side work per call.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from .layout import (
    ARRAYS_KEY,
    ARRAYS_SPEC_NAME,
    LAYOUT_NAME,
    LAYOUT_VERSION,
    RESULTS_KEY,
    RUN_SPEC_NAME,
    TABLE_SPEC_NAME,
    TABLES,
    UNITS,
    ResultRecord,
    arrays_ipc,
    arrays_schema,
    jsonable,
    table_ipc,
    table_schema,
)

log = logging.getLogger(__name__)

ARROW_FILE = "application/vnd.apache.arrow.file"


class TiledAuthError(Exception):
    """Tiled refused the credentials (401/403): not an outage; retrying will not help.

    Deliberately not an ``OSError``: code that treats I/O errors as "Tiled is away" must not
    catch it.
    """


def _spec(name, version=LAYOUT_VERSION):
    return {"name": name, "version": version}


def check_response(response: httpx.Response) -> httpx.Response:
    """Raise :class:`TiledAuthError` for 401/403 and ``httpx.HTTPStatusError`` for other errors."""
    if response.status_code in (401, 403):
        what = "no API key" if "authorization" not in {k.lower() for k in response.request.headers} else "the API key"
        raise TiledAuthError(
            f"Tiled at {response.request.url.host}:{response.request.url.port} refused {what} "
            f"({response.status_code} {response.reason_phrase}) for "
            f"{response.request.method} {response.request.url.path}"
        )
    response.raise_for_status()
    return response


def check_credentials(uri: str, *, api_key: str | None = None, **kwargs) -> "TiledResultsWriter | None":
    """Connect and create what the first write needs, so that a refused key fails now.

    Returns
    -------
    TiledResultsWriter or None
        A prepared writer, or None when Tiled is unreachable (results will wait in a spool).

    Raises
    ------
    TiledAuthError
        When Tiled answers but refuses the key (or its absence) for writing: a configuration
        error, reported at start rather than treated as an outage.
    """
    try:
        writer = TiledResultsWriter.from_uri(uri, api_key=api_key, **kwargs)
        writer.prepare()
    except TiledAuthError:
        raise
    except Exception as exc:  # unreachable or failing: the spool will take the results
        log.warning(
            "Tiled at %s is not answering now (%s: %s); results will be spooled until it is",
            uri,
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        return None
    return writer


def _is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == httpx.codes.CONFLICT


class TiledResultsWriter:
    """Write result records below ``results/`` of a Tiled server (layout v3).

    Parameters
    ----------
    client : tiled.client.container.Container
        A node (the server root, usually) connected with an API key that may write.
    results_key, arrays_key : str, optional
        Containers holding the result nodes and the arrays tables (created if absent).
    reserve : int, optional
        Arrays tables kept created ahead of need (:meth:`prepare`).
    parallel : int, optional
        Requests in flight at once for the nodes of one batch.
    tables : {"now", "deferred"}
        When each result's ``profile`` and ``curve`` tables are written: with the node, or by
        :meth:`prepare` when the writer is idle (the live path; :meth:`write_tables` forces them).

    Examples
    --------
    >>> writer = TiledResultsWriter(from_uri(url, api_key=key))  # doctest: +SKIP
    >>> writer.write_many([record_a, record_b])  # doctest: +SKIP
    """

    def __init__(
        self,
        client,
        *,
        results_key: str = RESULTS_KEY,
        arrays_key: str = ARRAYS_KEY,
        reserve: int = 2,
        parallel: int = 4,
        tables: str = "now",
    ):
        if tables not in ("now", "deferred"):
            raise ValueError(f"tables must be 'now' or 'deferred', got {tables!r}")
        self.tables = tables
        self._pending_tables: collections.deque = collections.deque(maxlen=100_000)
        self.client = client
        self.results_key = results_key
        self.arrays_key = arrays_key
        self.reserve = int(reserve)
        context = client.context
        self._http = context.http_client
        base = str(context.api_uri).rstrip("/")
        prefix = "/".join(getattr(client, "path_parts", ()) or ())
        self._metadata_url = f"{base}/metadata/{prefix + '/' if prefix else ''}"
        self._table_url = f"{base}/table/full/{prefix + '/' if prefix else ''}"
        self._roots_ready = False
        self._reserved: collections.deque[str] = collections.deque()
        self._runs: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._pool = ThreadPoolExecutor(max(1, parallel), thread_name_prefix="xrd-strain-tiled")
        self.requests = 0

    @classmethod
    def from_uri(cls, uri: str, *, api_key: str | None = None, **kwargs) -> "TiledResultsWriter":
        """Connect to a Tiled server and build a writer.

        Raises
        ------
        TiledAuthError
            If the server refuses the key (or its absence).
        httpx.HTTPError, OSError
            If it is unreachable.
        """
        from tiled.client import from_uri

        try:
            client = from_uri(uri, api_key=api_key)
        except httpx.HTTPStatusError as exc:
            check_response(exc.response)
            raise
        except RuntimeError as exc:  # the client's own words for a server that wants a key
            if "API key" in str(exc):
                what = "requires an API key and none was given" if not api_key else "refused the API key"
                raise TiledAuthError(f"Tiled at {uri} {what}") from None
            raise
        return cls(client, **kwargs)

    # -- requests -------------------------------------------------------------------------
    def _post(self, parent: str, body: dict) -> bool:
        """Create a node; True if created, False if it exists (409)."""
        self.requests += 1
        response = self._http.post(
            self._metadata_url + parent, json=jsonable(body), headers={"Accept": "application/json"}
        )
        if response.status_code == httpx.codes.CONFLICT:
            return False
        check_response(response)
        return True

    def _put_metadata(self, path: str, metadata: dict, specs: list | None = None) -> None:
        self.requests += 1
        body = {"metadata": jsonable(metadata)}
        if specs is not None:
            body["specs"] = specs
        check_response(
            self._http.put(
                self._metadata_url + path,
                json=body,
                params={"drop_revision": True},
                headers={"Accept": "application/json"},
            )
        )

    def _get_metadata(self, path: str) -> dict:
        self.requests += 1
        response = check_response(self._http.get(self._metadata_url + path, headers={"Accept": "application/json"}))
        return response.json()["data"]["attributes"]["metadata"]

    def _container(self, parent: str, key: str, metadata: dict, specs: list) -> bool:
        return self._post(
            parent,
            {"id": key, "structure_family": "container", "metadata": metadata, "specs": specs, "data_sources": []},
        )

    # -- preparation (off the critical path) -----------------------------------------------
    def _ensure_roots(self) -> None:
        if not self._roots_ready:
            self._container("", self.results_key, {"description": "xrd-strain results"}, [])
            self._container("", self.arrays_key, {"description": "xrd-strain result arrays, one table per write"}, [])
            self._roots_ready = True

    def _new_arrays_table(self) -> str:
        from tiled.structures.data_source import DataSource
        from tiled.structures.table import TableStructure

        key = str(uuid.uuid4())
        source = DataSource(structure=TableStructure.from_schema(arrays_schema()), structure_family="table")
        self._post(
            self.arrays_key,
            {
                "id": key,
                "structure_family": "table",
                "metadata": {},
                "specs": [_spec(ARRAYS_SPEC_NAME)],
                "data_sources": [dataclasses.asdict(source)],
            },
        )
        return key

    def prepare(self, *, raw_uid: str | None = None, curve_index: int | None = None, **_ignored) -> int:
        """Create ahead of need what the next write will use: the top containers, arrays tables
        up to ``reserve``, and the run node of a multi-curve run. Return the requests made."""
        before = self.requests
        self._ensure_roots()
        while len(self._reserved) < self.reserve:
            self._reserved.append(self._new_arrays_table())
        if raw_uid is not None and curve_index is not None:
            self._ensure_run(raw_uid, {"raw_uid": raw_uid, "raw_path": f"raw/{raw_uid}"})
        elif raw_uid is None:  # idle: the per-result tables of what was written
            self.write_tables(limit=8)
        return self.requests - before

    @property
    def pending_tables(self) -> int:
        """Results whose ``profile``/``curve`` tables are still to be written."""
        return len(self._pending_tables)

    def write_tables(self, *, limit: int | None = None) -> int:
        """Write the per-result tables still pending (at most ``limit`` results); return how many."""
        done = 0
        while self._pending_tables and (limit is None or done < limit):
            path, record = self._pending_tables[0]
            for table in TABLES:
                self._write_table(path, table, record)
            self._pending_tables.popleft()
            done += 1
        return done

    def _write_table(self, path: str, table: str, record: ResultRecord) -> None:
        from tiled.structures.data_source import DataSource
        from tiled.structures.table import TableStructure

        source = DataSource(structure=TableStructure.from_schema(table_schema(table)), structure_family="table")
        units = {c: UNITS[c] for c in TABLES[table]}
        self._post(
            path,
            {
                "id": table,
                "structure_family": "table",
                "metadata": {"units": units},
                "specs": [_spec(TABLE_SPEC_NAME)],
                "data_sources": [dataclasses.asdict(source)],
            },
        )
        self.requests += 1  # created now or by an earlier attempt (409): its data is (re)written either way
        check_response(
            self._http.put(
                self._table_url + f"{path}/{table}",
                content=table_ipc(record, table),
                headers={"Content-Type": ARROW_FILE},
            )
        )

    def _ensure_run(self, raw_uid: str, metadata: dict) -> None:
        if raw_uid in self._runs:
            return
        self._container(self.results_key, raw_uid, metadata, [_spec(RUN_SPEC_NAME)])
        self._runs[raw_uid] = None
        while len(self._runs) > 256:  # bounded: runs arrive in order, old ones are done
            self._runs.popitem(last=False)

    # -- writing --------------------------------------------------------------------------
    def write(self, record: ResultRecord) -> str:
        """Write one record; return its node path below the server root."""
        return self.write_many([record])[0]

    def write_many(self, records: list[ResultRecord]) -> list[str]:
        """Write records (arrays of all of them in one table), return their node paths.

        Raises
        ------
        TiledAuthError
            When Tiled refuses the key.
        httpx.HTTPError, OSError
            When Tiled is unreachable or failing; what was written is rewritten by a replay.
        """
        self._ensure_roots()
        with_arrays = [r for r in records if r.arrays]
        pointers: dict[int, dict] = {}
        if with_arrays:
            key = self._reserved.popleft() if self._reserved else self._new_arrays_table()
            self.requests += 1
            check_response(
                self._http.put(
                    self._table_url + f"{self.arrays_key}/{key}",
                    content=arrays_ipc(with_arrays),
                    headers={"Content-Type": ARROW_FILE},
                )
            )
            pointers = {id(r): {"node": f"{self.arrays_key}/{key}", "row": i} for i, r in enumerate(with_arrays)}
        for r in records:
            if r.curve_index is not None:
                self._ensure_run(
                    r.raw_uid, {k: r.metadata.get(k) for k in ("raw_uid", "raw_path", "scan_id", "sample")}
                )
        futures = [self._pool.submit(self._write_node, r, pointers.get(id(r))) for r in records]
        errors = [f.exception() for f in futures]
        for exc in errors:
            if isinstance(exc, TiledAuthError):
                raise exc
        for exc in errors:
            if exc is not None:
                raise exc
        paths = [f.result() for f in futures]
        self._pending_tables.extend((path, r) for path, r in zip(paths, records) if r.arrays)
        if self.tables == "now":
            self.write_tables()
        return paths

    def _write_node(self, record: ResultRecord, pointer: dict | None) -> str:
        metadata = node_metadata(record, pointer)
        parent = "/".join((self.results_key, *record.path[:-1]))
        path = f"{parent}/{record.path[-1]}"
        if not self._container(parent, record.path[-1], metadata, [_spec(LAYOUT_NAME)]):
            # Written before (a replay): point at the arrays just written; keep the refinement state.
            existing = self._get_metadata(path)
            if "refinement" in existing and existing["refinement"] is not None:
                metadata["refinement"] = existing["refinement"]
            log.info("result node %s exists already; its metadata is replaced", path)
            self._put_metadata(path, metadata, [_spec(LAYOUT_NAME)])
        return path

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def node_metadata(record: ResultRecord, pointer: dict | None) -> dict[str, Any]:
    """A record's metadata as written in layout v3 (whatever layout the record was made for)."""
    md = dict(record.metadata)
    md["layout"] = {"name": LAYOUT_NAME, "version": LAYOUT_VERSION}
    md.setdefault("units", dict(UNITS))
    md["arrays"] = pointer
    if record.status == "ok" and pointer is not None:
        md.setdefault("refinement", {"status": "none"})
    return md
