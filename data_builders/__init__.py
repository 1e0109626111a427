"""Turn raw logs and public datasets into hybridrec's canonical tables (see ``tables.py``)."""

from data_builders.errors import HybridRecError
from data_builders.report import LoadReport
from data_builders.tables import ColumnRoles, RecDataset

__all__ = ["ColumnRoles", "HybridRecError", "LoadReport", "RecDataset"]
