"""Tiled adapter: the results layout, an idempotent batched writer, a durable spool, queries and
the refinement state of a result.

Importing this package does not import the Tiled client or server; they are
imported where a connection is made (``ResultNode``, the client class of a result node, is in
:mod:`.client` and imports the Tiled client).
"""

from xrd_strain_plugin.results import ARRAY_NAMES, LAYOUT_NAME, LAYOUT_VERSION, UNITS, ResultRecord, base_metadata

from .queries import ResultRow, find_results, format_table, read_result
from .records import offline_record, publish_offline, record_from_result
from .refinement import (
    RefinementOutcome,
    claim_and_refine,
    claim_refinement,
    fail_refinement,
    find_unrefined,
    read_refinement,
    refinement_inputs,
    release_refinement,
    write_refinement,
)
from .spool import Spool, SpoolingPublisher, SpoolLockedError
from .writer import TiledAuthError, TiledResultsWriter

__all__ = [
    "ARRAY_NAMES",
    "LAYOUT_NAME",
    "LAYOUT_VERSION",
    "RefinementOutcome",
    "ResultRecord",
    "ResultRow",
    "Spool",
    "SpoolLockedError",
    "SpoolingPublisher",
    "TiledAuthError",
    "TiledResultsWriter",
    "UNITS",
    "base_metadata",
    "claim_and_refine",
    "claim_refinement",
    "fail_refinement",
    "find_results",
    "find_unrefined",
    "format_table",
    "offline_record",
    "publish_offline",
    "read_refinement",
    "read_result",
    "record_from_result",
    "refinement_inputs",
    "release_refinement",
    "write_refinement",
]
