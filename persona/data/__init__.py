"""Importers into the common records, the synthetic generator and user splits.

Every importer returns a :class:`~persona.data.base.DatasetBundle`; store it with
:func:`evalbench.store.datasets.write_dataset` (one transaction). Heavy modules load on first use.
"""

from persona.data.base import DatasetBundle
from persona.data.errors import DataError, Problems

__all__ = ["DatasetBundle", "DataError", "Problems"]
