"""One module per `adjudicate` command; importing one registers it on the app."""
