"""The pure core: records, events, the fold and the decisions over them. No I/O, no clock, no git."""
