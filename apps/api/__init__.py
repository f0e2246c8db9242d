"""The cold-start personalisation HTTP API: :func:`apps.api.app.create_app`, served by ``pwb serve``."""
