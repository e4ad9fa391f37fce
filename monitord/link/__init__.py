"""The local link between the daemon and the bedside dashboard: newline-delimited JSON over a
Unix socket (protocol in ``docs/dashboard.md``). ``server`` runs in the daemon, ``client`` in
the dashboard; ``protocol`` holds what both agree on."""
