"""monitord: bedside monitor for intravenous ketamine infusions for chronic pain.

Not a certified medical device: its alarms supplement, never replace, the devices' own.
"""

__version__ = "0.1.0"
