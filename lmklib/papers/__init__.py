"""One module per notebook: its profiles, data recipe, training and evaluation."""
