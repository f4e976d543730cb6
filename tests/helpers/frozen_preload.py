"""Imported last by the CLI's forkserver (forked_cli.PRELOAD): what the server imported is kept out of each
child's garbage collections, as a user's process keeps the libraries it imports (runtime.long_lived_imports)."""

import gc

gc.collect()
gc.freeze()
