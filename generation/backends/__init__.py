"""Generation backends: our diffusers loop (diffusers_sd) and the stock-pipeline pass-through (stock)."""
