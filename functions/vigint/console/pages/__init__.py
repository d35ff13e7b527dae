"""The console's pages, one module per area; ``vigint.console.routes`` lists their routes."""
