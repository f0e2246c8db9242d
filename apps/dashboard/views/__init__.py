"""The dashboard's pages, one file each, routed by ``apps/dashboard/app.py``."""
