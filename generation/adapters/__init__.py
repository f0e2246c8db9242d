"""Adapters feeding the UNet: IP-Adapter references (ip_adapter) and consented identity injection (identity)."""
