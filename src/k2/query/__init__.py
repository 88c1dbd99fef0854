"""Reading trades and candles across the hot store and the archive: one path, one text form."""
