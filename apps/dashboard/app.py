"""Entry point of ``pwb dashboard``: an ``st.navigation`` router over the views in ``apps/dashboard/views``.

Run it through ``pwb dashboard --db WORKSPACE`` (which sets ``$PWB_DB`` and ``$PWB_ANNOTATOR``), or
directly with ``PWB_DB=... streamlit run apps/dashboard/app.py``. The views live in ``views/``, not
``pages/``: Streamlit treats a ``pages/`` folder next to the entry script as a v1 multipage app and, on a
session's first request for a page URL, runs that page without this router.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import apps.dashboard  # noqa: F401  (installed, or run from the repository root)
except ImportError:  # `streamlit run` from elsewhere on a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import streamlit as st

from apps.dashboard import common

#: (file in views/, title, material icon, URL path); the first is the default page
PAGES = [
    ("overview.py", "Overview", ":material/leaderboard:", "overview"),
    ("cohorts.py", "Cohorts and bias", ":material/groups:", "cohorts"),
    ("personas.py", "Personas", ":material/person_search:", "personas"),
    ("generations.py", "Generations", ":material/compare:", "generations"),
    ("compare.py", "Compare runs", ":material/difference:", "compare"),
]


def sidebar() -> None:
    """The workspace path, the annotator, and a button that drops cached reads."""
    with st.sidebar:
        st.caption(f"Workspace: {common.db_path()}")
        st.caption(f"Labelling as: **{common.annotator()}**")
        if st.button(
            "Reload data",
            key="reload_data",
            icon=":material/refresh:",
            help=f"Cached reads refresh every {common.TTL_S} s; this drops them now.",
        ):
            common.clear_caches()


def main() -> None:
    """Configure the page, route to the chosen view (stopping with a message when there is no workspace)."""
    st.set_page_config(page_title="Persona Workbench", page_icon=":material/palette:", layout="wide")
    st.set_option("client.toolbarMode", "viewer")  # a review tool: no deploy / clear-cache developer menu
    pages = [
        st.Page(f"views/{file}", title=title, icon=icon, url_path=url, default=i == 0)
        for i, (file, title, icon, url) in enumerate(PAGES)
    ]
    page = st.navigation(pages)
    sidebar()
    common.require_workspace()
    page.run()


main()
