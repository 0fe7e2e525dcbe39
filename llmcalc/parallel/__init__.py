"""Multi-GPU layouts: per-rank memory and communication, closed forms and their fake-group traces."""
