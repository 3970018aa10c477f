"""One cog per file: each file holds the commands of one feature and its error handling."""
