"""Where the node list comes from (`-db`): memory, a SQLite file, or the Kubernetes pod watch."""
