"""qtrack's feature engine: Qlib's Alpha158/Alpha360 expressions on a compiled panel, to Qlib's bits."""
