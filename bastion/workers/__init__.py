"""Several SSH worker processes behind one port (``[server] workers``); see supervisor.py."""
