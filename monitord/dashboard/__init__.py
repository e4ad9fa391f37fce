"""The bedside dashboard: a Textual app that shows one bed and sends the nurse's actions to the
daemon over the local link (``monitord.link``)."""
