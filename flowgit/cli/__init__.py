"""The command line and the MCP server: thin callbacks over ops and store."""
