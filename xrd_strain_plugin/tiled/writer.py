"""Write :class:`~xrd_strain_plugin.tiled.layout.ResultRecord` objects to Tiled, idempotently.

Writing the same record twice leaves one node with the same content: node
keys are derived from the raw run (uid, curve index), an existing node is
adopted rather than duplicated and its tables are (re)written in full. This is
what makes spool replay exactly-once even when the plugin dies between a
successful write and the removal of the spooled copy.
"""

from __future__ import annotations

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
        # The two tables go up concurrently: each is two round trips the server can overlap.
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="xrd-strain-tiled") if parallel else None

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

    def write(self, record: ResultRecord):
        """Create (or complete) the node for ``record`` and return its client.

        Raises
        ------
        httpx.HTTPError, OSError
            When Tiled is unreachable or failing; nothing is assumed written.
        """
        parent = self.results
        if record.curve_index is not None:
            parent = self._run_node(record)
        key = record.path[-1]
        node, created = self._create_or_get(parent, key, metadata=dict(record.metadata), specs=_specs())
        base = node if created else getattr(node, "base", node)
        existing = set() if created else set(base)

        def put(item):
            name, columns = item
            if name in existing:
                # A previous attempt created the table; its data may be missing: rewrite in full.
                base[name].write(_frame(columns))
            else:
                base.write_table(_frame(columns), key=name)

        tables = list(record.tables().items())
        if self._pool is not None and len(tables) > 1:
            for future in [self._pool.submit(put, t) for t in tables]:
                future.result()  # re-raises the first failure
        else:
            for t in tables:
                put(t)
        return node

    def _run_node(self, record: ResultRecord):
        node = self._run_nodes.get(record.raw_uid)
        if node is None:
            from tiled.structures.core import Spec

            md = {k: record.metadata.get(k) for k in ("raw_uid", "raw_path", "scan_id", "sample")}
            node = self._child(self.results, record.raw_uid, specs=[Spec(RUN_SPEC_NAME, version=LAYOUT_VERSION)], metadata=md)
            if len(self._run_nodes) > 64:  # bounded: runs are written in order, old ones are done
                self._run_nodes.clear()
            self._run_nodes[record.raw_uid] = node
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
