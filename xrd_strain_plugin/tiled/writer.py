"""Write :class:`~xrd_strain_plugin.tiled.layout.ResultRecord` objects to Tiled, idempotently.

Writing the same record twice leaves one node with the same content: node
keys are derived from the raw run (uid, curve index), an existing node is
adopted rather than duplicated and its tables are (re)written in full. This is
what makes spool replay exactly-once even when the plugin dies between a
successful write and the removal of the spooled copy.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from .layout import LAYOUT_NAME, LAYOUT_VERSION, RESULTS_KEY, RUN_SPEC_NAME, ResultRecord

log = logging.getLogger(__name__)


def _specs():
    from tiled.structures.core import Spec

    return [Spec(LAYOUT_NAME, version=LAYOUT_VERSION), Spec("composite")]


def _is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == httpx.codes.CONFLICT


class TiledResultsWriter:
    """Write result records below ``results/`` of a Tiled container.

    Parameters
    ----------
    client : tiled.client.container.Container
        A writable node (the server root, usually), connected with an API
        key that may write.
    results_key : str, optional
        Name of the container that holds every result (created if absent).

    Examples
    --------
    >>> writer = TiledResultsWriter(from_uri(url, api_key=key))  # doctest: +SKIP
    >>> writer.write(record)  # doctest: +SKIP
    """

    def __init__(self, client, *, results_key: str = RESULTS_KEY, parallel: bool = True):
        self.client = client
        self.results_key = results_key
        self._results = None
        self._run_nodes: dict[str, Any] = {}
        self._prepared: dict[tuple[str, ...], Any] = {}
        # Tables (and metadata) go up concurrently: the server overlaps their round trips.
        self._pool = ThreadPoolExecutor(3, thread_name_prefix="xrd-strain-tiled") if parallel else None

    @classmethod
    def from_uri(cls, uri: str, *, api_key: str | None = None, **kwargs) -> "TiledResultsWriter":
        """Connect to a Tiled server and build a writer (raises if unreachable)."""
        from tiled.client import from_uri

        return cls(from_uri(uri, api_key=api_key), **kwargs)

    @property
    def results(self):
        """The ``results`` container, created on first use."""
        if self._results is None:
            self._results = self._child(self.client, self.results_key, specs=[], metadata={"description": "xrd-strain results"})
        return self._results

    def prepare(self, *, raw_uid: str, curve_index: int | None, scan_id: int | None = None,
                sample: str | None = None) -> bool:
        """Create the (empty) node of a result that is being computed, to take a round trip off
        the latency: :meth:`write` then only fills in metadata and tables, concurrently.

        The prepared node has the layout's specs but no ``layout`` metadata, so result queries
        do not see it until :meth:`write` completes it. Return True if a node was created.
        """
        path = (raw_uid,) if curve_index is None else (raw_uid, str(curve_index))
        parent = self.results if curve_index is None else self._run_node(
            raw_uid, {"raw_uid": raw_uid, "raw_path": f"raw/{raw_uid}", "scan_id": scan_id, "sample": sample})
        stub = {"raw_uid": raw_uid, "curve_index": curve_index, "pending": True}
        node, created = self._create_or_get(parent, path[-1], metadata=stub, specs=_specs())
        if created:
            if len(self._prepared) >= 64:  # bounded: a prepared node is written next, or soon
                self._prepared.pop(next(iter(self._prepared)))
            self._prepared[path] = node
        return created

    def write(self, record: ResultRecord):
        """Create (or complete) the node for ``record`` and return its client.

        Raises
        ------
        httpx.HTTPError, OSError
            When Tiled is unreachable or failing; nothing is assumed written.
        """
        node = self._prepared.pop(record.path, None)
        if node is not None:
            created, set_metadata = True, True
        else:
            parent = self.results
            if record.curve_index is not None:
                parent = self._run_node(record.raw_uid, {k: record.metadata.get(k)
                                                         for k in ("raw_uid", "raw_path", "scan_id", "sample")})
            node, created = self._create_or_get(parent, record.path[-1], metadata=dict(record.metadata),
                                                specs=_specs())
            set_metadata = not created  # an adopted node may hold an older attempt's (or a stub's) metadata
        base = node if created else getattr(node, "base", node)
        existing = set() if created else set(base)

        def put(item):
            name, columns = item
            if name in existing:
                # A previous attempt created the table; its data may be missing: rewrite in full.
                base[name].write(_frame(columns))
            else:
                base.write_table(_frame(columns), key=name)

        jobs = [functools.partial(put, t) for t in record.tables().items()]
        if set_metadata:
            jobs.append(functools.partial(node.replace_metadata, metadata=dict(record.metadata), specs=_specs(),
                                          drop_revision=True))
        if self._pool is not None and len(jobs) > 1:
            for future in [self._pool.submit(job) for job in jobs]:
                future.result()  # re-raises the first failure
        else:
            for job in jobs:
                job()
        return node

    def _run_node(self, raw_uid: str, metadata: dict):
        node = self._run_nodes.get(raw_uid)
        if node is None:
            from tiled.structures.core import Spec

            node = self._child(self.results, raw_uid, specs=[Spec(RUN_SPEC_NAME, version=LAYOUT_VERSION)],
                               metadata=metadata)
            if len(self._run_nodes) > 64:  # bounded: runs are written in order, old ones are done
                self._run_nodes.clear()
            self._run_nodes[raw_uid] = node
        return node

    @staticmethod
    def _create_or_get(parent, key, *, metadata, specs):
        try:
            return parent.create_container(key, metadata=metadata, specs=specs), True
        except httpx.HTTPStatusError as exc:
            if not _is_conflict(exc):
                raise
            log.info("result node %s exists already; completing it", key)
            return parent[key], False

    def _child(self, parent, key, *, specs, metadata):
        try:
            return parent[key]
        except KeyError:
            node, _ = self._create_or_get(parent, key, metadata=metadata, specs=specs)
            return node


def _frame(columns):
    import pandas

    return pandas.DataFrame(columns)
