"""``meshpose eval``: the accuracy tables of every model family."""
