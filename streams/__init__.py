"""Pure projectors (event -> index rows), the SQL lineage index, and the runner that drives them."""
