"""Importers into the common records, the synthetic generator and user splits.

Every importer returns a :class:`~workbench.dataset.DatasetBundle`; store it with
:func:`workbench.store.datasets.write_dataset` (one transaction). Heavy modules load on first use.
"""

from workbench.dataset import DatasetBundle
from workbench.errors import DataError, Problems

__all__ = ["DatasetBundle", "DataError", "Problems"]
