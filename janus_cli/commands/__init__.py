"""One module per command; each is called by main.py and imports no other command module."""
