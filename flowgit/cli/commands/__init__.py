"""One module per command group; each function takes the App and returns an exit code."""
