"""Tiled adapter: the results layout, an idempotent writer, a durable spool and queries.

Importing this package does not import the Tiled client or server; they are
imported where a connection is made.
"""

from .layout import ARRAY_NAMES, LAYOUT_NAME, LAYOUT_VERSION, ResultRecord, base_metadata
from .queries import ResultRow, find_results, format_table, read_result
from .records import offline_record, publish_offline, record_from_result
from .spool import Spool, SpoolingPublisher, SpoolLockedError
from .writer import TiledResultsWriter

__all__ = [
    "ARRAY_NAMES",
    "LAYOUT_NAME",
    "LAYOUT_VERSION",
    "ResultRecord",
    "ResultRow",
    "Spool",
    "SpoolLockedError",
    "SpoolingPublisher",
    "TiledResultsWriter",
    "base_metadata",
    "find_results",
    "format_table",
    "offline_record",
    "publish_offline",
    "read_result",
    "record_from_result",
]
