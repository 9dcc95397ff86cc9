"""`flowgit board`: a read-only, live local web page over the repository's state, served by
the standard library (docs/adr/0010-the-board-on-the-standard-library.md)."""
