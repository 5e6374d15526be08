"""Reports built below the CLI: data for one command's JSON and its text rendering."""
