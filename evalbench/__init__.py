"""evalbench."""
