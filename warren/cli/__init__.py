"""The `warren` command: daemons (cluster init, manager join, worker start) and client commands."""
